package dev.mcq.segment

import org.json.JSONObject

/**
 * The part of an mcq artifact's metadata sidecar (`<artifact>.json`, contract: mcq/export/metadata.schema.json)
 * the app uses. ExecuTorch programs carry no metadata inside, so the app reads the sidecar shipped beside the `.pte`.
 */
data class McqMetadata(
    val encoder: String,
    val head: String,
    val precision: String,
    val classNames: List<String>,
    val palette: List<IntArray>,
    val height: Int,
    val width: Int,
    val range: FloatArray,
    val mean: FloatArray,
    val std: FloatArray,
) {
    companion object {
        /** Parse [json] (the sidecar named [source]); a segmentation model that stretches its input, or an error. */
        fun parse(json: String, source: String): McqMetadata {
            val meta = JSONObject(json)
            val task = meta.getString("task")
            require(task == "seg") { "$source: a $task model: this app shows segmentation models" }
            val input = meta.getJSONObject("input")
            val resize = input.getString("resize")
            require(resize.startsWith("stretch")) { "$source: input resize \"$resize\": this app only stretches" }
            require(input.getString("layout") == "NCHW" && input.getString("color") == "RGB") {
                "$source: the app feeds NCHW RGB input"
            }
            val shape = input.getJSONArray("shape")
            val names = meta.getJSONArray("class_names")
            val colours = meta.getJSONArray("palette")
            fun floats(key: String) = input.getJSONArray(key).let { a -> FloatArray(a.length()) { a.getDouble(it).toFloat() } }
            return McqMetadata(
                encoder = meta.getString("encoder"),
                head = meta.getString("head"),
                precision = meta.optString("precision"),
                classNames = List(names.length()) { names.getString(it) },
                palette = List(colours.length()) { i -> colours.getJSONArray(i).let { c -> IntArray(3) { c.getInt(it) } } },
                height = shape.getInt(2),
                width = shape.getInt(3),
                range = floats("range"),
                mean = floats("mean"),
                std = floats("std"),
            )
        }
    }
}
