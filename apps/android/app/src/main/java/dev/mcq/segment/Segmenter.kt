package dev.mcq.segment

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Color
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File

/** One segmentation: class index per pixel (row-major, the model's input size), its colours, the time. */
class Segmentation(
    val mask: ByteArray,
    val overlay: Bitmap,
    val milliseconds: Double,
    /** (class index, share of the pixels), most frequent first. */
    val classes: List<Pair<Int, Double>>,
)

/**
 * The first mcq ExecuTorch segmentation program in the app's assets (`NAME.pte`) with its sidecar (`NAME.pte.json`).
 * Everything model-specific comes from the sidecar: input size, normalisation, class names, colours.
 */
class Segmenter(context: Context) {
    val meta: McqMetadata
    private val module: Module

    init {
        val assets = context.assets
        val name = assets.list("")?.firstOrNull { it.endsWith(".pte") }
            ?: throw IllegalStateException("no .pte in the app's assets: copy an exported model and its .json there")
        val sidecar = "$name.json"
        val json = try {
            assets.open(sidecar).bufferedReader().use { it.readText() }
        } catch (e: java.io.IOException) {
            throw IllegalStateException("$name: its metadata $sidecar is missing from the assets")
        }
        meta = McqMetadata.parse(json, sidecar)
        val file = File(context.filesDir, name)  // ExecuTorch loads from a path: copy the asset out once
        if (!file.exists()) assets.open(name).use { input -> file.outputStream().use { input.copyTo(it) } }
        module = Module.load(file.absolutePath)
    }

    val description: String
        get() = "${meta.encoder} ${meta.head}, ${meta.precision} ${meta.width}x${meta.height}, " +
            "${meta.classNames.size} classes, ExecuTorch"

    fun segment(photo: Bitmap): Segmentation {
        val input = Tensor.fromBlob(preprocess(photo), longArrayOf(1, 3, meta.height.toLong(), meta.width.toLong()))
        val start = System.nanoTime()
        val output = module.forward(EValue.from(input))[0].toTensor()
        val milliseconds = (System.nanoTime() - start) / 1e6
        val mask = argmax(output.dataAsFloatArray, output.shape())
        val counts = mask.asList().groupingBy { it.toInt() and 0xff }.eachCount()
        val classes = counts.entries.sortedByDescending { it.value }.map { it.key to it.value.toDouble() / mask.size }
        return Segmentation(mask, colourise(mask), milliseconds, classes)
    }

    /** The photo stretched to the input size (bilinear), scaled to the metadata's range, normalised, NCHW. */
    private fun preprocess(photo: Bitmap): FloatArray {
        val (w, h) = meta.width to meta.height
        val scaled = Bitmap.createScaledBitmap(photo, w, h, true)
        val pixels = IntArray(w * h)
        scaled.getPixels(pixels, 0, w, 0, 0, w, h)
        val (lo, hi) = meta.range[0] to meta.range[1]
        val out = FloatArray(3 * w * h)
        for (i in pixels.indices) {
            val rgb = intArrayOf(Color.red(pixels[i]), Color.green(pixels[i]), Color.blue(pixels[i]))
            for (c in 0 until 3) {
                val v = lo + rgb[c] / 255f * (hi - lo)
                out[c * w * h + i] = (v - meta.mean[c]) / meta.std[c]
            }
        }
        return out
    }

    /** Class index per pixel of logits [1, K, H, W] (the first of equal maxima). */
    private fun argmax(logits: FloatArray, shape: LongArray): ByteArray {
        val k = shape[1].toInt()
        val plane = (shape[2] * shape[3]).toInt()
        return ByteArray(plane) { i ->
            var best = 0
            for (c in 1 until k) if (logits[c * plane + i] > logits[best * plane + i]) best = c
            best.toByte()
        }
    }

    private fun colourise(mask: ByteArray): Bitmap {
        val colours = IntArray(mask.size) { i ->
            meta.palette[mask[i].toInt() and 0xff].let { Color.rgb(it[0], it[1], it[2]) }
        }
        return Bitmap.createBitmap(colours, meta.width, meta.height, Bitmap.Config.ARGB_8888)
    }
}
