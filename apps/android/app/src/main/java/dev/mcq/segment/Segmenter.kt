package dev.mcq.segment

import android.content.Context
import android.graphics.Bitmap
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File

/**
 * One prediction: what to draw over the image (at the model's input size), the time of `forward`, and per task
 * what it found: seg the classes (index, share of the pixels; most frequent first), depth its min and max.
 */
class Prediction(
    val overlay: Bitmap,
    val milliseconds: Double,
    val classes: List<Pair<Int, Double>>,
    val depthRange: ClosedFloatingPointRange<Float>?,
)

/**
 * The app's mcq ExecuTorch program, `assets/model.pte` (which `mcq export executorch --app android` installs), with
 * its sidecar `model.pte.json`. Everything model-specific comes from the sidecar: task, input size, normalisation,
 * class names, colours, depth units.
 */
class Segmenter(context: Context) {
    val meta: McqMetadata
    private val module: Module

    init {
        val assets = context.assets
        val json = try {
            assets.open(SIDECAR).bufferedReader().use { it.readText() }
        } catch (e: java.io.IOException) {
            throw IllegalStateException("$SIDECAR is not in the app's assets: run `mcq export executorch --checkpoint " +
                "CKPT --app android` and build again")
        }
        meta = McqMetadata.parse(json, SIDECAR)
        val file = File(context.filesDir, MODEL) // ExecuTorch loads from a path: copy the asset out
        assets.open(MODEL).use { input -> file.outputStream().use { input.copyTo(it) } }
        module = Module.load(file.absolutePath)
    }

    val description: String
        get() = "${meta.summary}, ExecuTorch"

    /** A photo or camera frame (ARGB_8888, upright): stretched to the input size, run, post-processed. */
    fun predict(photo: Bitmap): Prediction {
        val argb = IntArray(photo.width * photo.height)
        photo.getPixels(argb, 0, photo.width, 0, 0, photo.width, photo.height)
        val input = Processing.preprocess(Processing.rgbOf(argb), photo.width, photo.height, meta)
        val shape = longArrayOf(1, 3, meta.height.toLong(), meta.width.toLong())
        val start = System.nanoTime()
        val tensor = module.forward(EValue.from(Tensor.fromBlob(input, shape)))[0].toTensor()
        val milliseconds = (System.nanoTime() - start) / 1e6
        val overlay = if (meta.outputName == "labels") { // class indices [1, H, W]: the argmax was taken in the model
            val mask = when (meta.outputDtype) {
                "int32" -> tensor.dataAsIntArray.let { a -> ByteArray(a.size) { a[it].toByte() } }
                else -> tensor.dataAsUnsignedByteArray // uint8
            }
            Processing.overlay(mask, meta)
        } else {
            Processing.overlay(tensor.dataAsFloatArray, meta)
        }
        val bitmap = Bitmap.createBitmap(overlay.argb, meta.width, meta.height, Bitmap.Config.ARGB_8888)
        return Prediction(bitmap, milliseconds, overlay.classes, overlay.depthRange)
    }

    companion object {
        const val MODEL = "model.pte"
        const val SIDECAR = "$MODEL.json"
    }
}
