package dev.mcq.segment

import org.json.JSONObject

/**
 * The part of an mcq artifact's metadata sidecar (`<artifact>.json`, contract: mcq/tasks/metadata.schema.json; the
 * keys are the schema's) the app uses. ExecuTorch programs carry no metadata inside, so the app reads the sidecar
 * shipped beside the `.pte`.
 */
data class McqMetadata(
    /** "seg" or "depth". */
    val task: String,
    val encoder: String,
    val head: String,
    val precision: String,
    /** seg: class index -> name and RGB colour; empty for depth. */
    val classNames: List<String>,
    val palette: List<IntArray>,
    val height: Int,
    val width: Int,
    val range: FloatArray,
    val mean: FloatArray,
    val std: FloatArray,
    /** seg: "logits", or "labels" (`mcq export --outputs labels`: the argmax is in the model, [outputDtype]). */
    val outputName: String,
    val outputDtype: String,
    /** depth: the units of the output ("metres") and the largest depth the head predicts. */
    val units: String,
    val maxDepth: Double
) {
    /** What the app says of the model: encoder, head, precision, input size, and its classes or depth. */
    val summary: String
        get() {
            val what = if (task == "seg") "${classNames.size} classes" else "depth in $units up to $maxDepth"
            return "$encoder $head, $precision ${width}x$height, $what"
        }

    companion object {
        val TASKS = listOf("seg", "depth")

        /** Parse [json] (the sidecar named [source]); a seg or depth model that stretches its input, or an error. */
        fun parse(json: String, source: String): McqMetadata {
            val meta = JSONObject(json)
            val task = meta.getString("task")
            require(task in TASKS) { "$source: a $task model: this app shows segmentation and depth models" }
            val input = meta.getJSONObject("input")
            val resize = input.getString("resize")
            require(resize.startsWith("stretch")) { "$source: input resize \"$resize\": this app only stretches" }
            require(input.getString("layout") == "NCHW" && input.getString("color") == "RGB") {
                "$source: the app feeds NCHW RGB input"
            }
            val shape = input.getJSONArray("shape")
            val output = meta.getJSONObject("output")
            val names = meta.optJSONArray("class_names")
            val colours = meta.optJSONArray("palette")
            require(task != "seg" || (names != null && colours != null)) {
                "$source: a seg model without class_names and palette"
            }
            fun floats(key: String) = input.getJSONArray(key).let { a ->
                FloatArray(a.length()) { a.getDouble(it).toFloat() }
            }
            return McqMetadata(
                task = task,
                encoder = meta.getString("encoder"),
                head = meta.getString("head"),
                precision = meta.optString("precision"),
                classNames = List(names?.length() ?: 0) { names!!.getString(it) },
                palette = List(colours?.length() ?: 0) { i ->
                    colours!!.getJSONArray(i).let { c -> IntArray(3) { c.getInt(it) } }
                },
                height = shape.getInt(2),
                width = shape.getInt(3),
                range = floats("range"),
                mean = floats("mean"),
                std = floats("std"),
                outputName = output.getString("name"),
                outputDtype = output.optString("dtype"),
                units = output.optString("units"),
                maxDepth = output.optDouble("max_depth")
            )
        }
    }
}
