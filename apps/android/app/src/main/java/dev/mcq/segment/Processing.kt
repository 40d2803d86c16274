package dev.mcq.segment

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min

/**
 * The app's pre- and post-processing on plain arrays, as mcq does it (`mcq.apps.reference`; the web app's mcq.js
 * is the same code in JavaScript). No Android classes: the unit tests (src/test) check it against mcq's reference
 * vector and sidecars on the JVM, with Gradle or with Debian's kotlinc (`jvm-test.sh`).
 */
object Processing {
    private const val PRECISION_BITS = 32 - 8 - 2 // Pillow's fixed point for 8-bit resampling
    private const val ONE = 1 shl PRECISION_BITS

    /**
     * Resize interleaved 8-bit pixels ([channels] per pixel, [width] x [height], values 0-255) to [outWidth] x
     * [outHeight] as Pillow's BILINEAR does (antialiased when shrinking, fixed-point weights, horizontal pass first).
     */
    fun resizeBilinear(
        pixels: IntArray, width: Int, height: Int, channels: Int, outWidth: Int, outHeight: Int
    ): IntArray {
        var out = pixels
        if (outWidth != width) out = pass(out, width, height, channels, outWidth, horizontal = true)
        if (outHeight != height) out = pass(out, outWidth, height, channels, outHeight, horizontal = false)
        return out
    }

    private class Taps(val start: Int, val weights: IntArray)

    private fun coefficients(inSize: Int, outSize: Int): List<Taps> {
        val scale = inSize.toDouble() / outSize
        val support = max(scale, 1.0) // the bilinear filter's support (1) widened when shrinking
        return List(outSize) { xx ->
            val center = (xx + 0.5) * scale
            val xmin = max((center - support + 0.5).toInt(), 0)
            val count = min((center + support + 0.5).toInt(), inSize) - xmin
            val w = DoubleArray(count) { x ->
                val t = abs((x + xmin - center + 0.5) / support)
                if (t < 1) 1 - t else 0.0
            }
            val total = w.sum()
            Taps(xmin, IntArray(count) { x ->
                val k = if (total != 0.0) w[x] / total else w[x]
                if (k < 0) (-0.5 + k * ONE).toInt() else (0.5 + k * ONE).toInt()
            })
        }
    }

    private fun pass(src: IntArray, w: Int, h: Int, c: Int, outSize: Int, horizontal: Boolean): IntArray {
        val coeffs = coefficients(if (horizontal) w else h, outSize)
        val ow = if (horizontal) outSize else w
        val oh = if (horizontal) h else outSize
        val out = IntArray(ow * oh * c)
        for (y in 0 until oh) for (x in 0 until ow) {
            val taps = coeffs[if (horizontal) x else y]
            for (ch in 0 until c) {
                var acc = ONE / 2
                for (i in taps.weights.indices) {
                    val idx = if (horizontal) (y * w + taps.start + i) * c + ch else ((taps.start + i) * w + x) * c + ch
                    acc += src[idx] * taps.weights[i]
                }
                out[(y * ow + x) * c + ch] = (acc shr PRECISION_BITS).coerceIn(0, 255)
            }
        }
        return out
    }

    /**
     * RGB pixels ([width] x [height], interleaved, 0-255) -> the model's input: stretched to the input size,
     * scaled to the metadata's range, normalised with its mean/std, NCHW float32.
     */
    fun preprocess(rgb: IntArray, width: Int, height: Int, meta: McqMetadata): FloatArray {
        val (w, h) = meta.width to meta.height
        val resized = resizeBilinear(rgb, width, height, 3, w, h)
        val (lo, hi) = meta.range[0] to meta.range[1]
        val out = FloatArray(3 * w * h)
        for (c in 0 until 3) for (i in 0 until w * h) {
            val v = lo + resized[i * 3 + c] / 255f * (hi - lo)
            out[c * w * h + i] = (v - meta.mean[c]) / meta.std[c]
        }
        return out
    }

    /** Class index per pixel of logits [1, K, H, W] ([classes] = K, [plane] = H * W): the first of equal maxima. */
    fun argmax(logits: FloatArray, classes: Int, plane: Int): ByteArray = ByteArray(plane) { i ->
        var best = 0
        for (k in 1 until classes) if (logits[k * plane + i] > logits[best * plane + i]) best = k
        best.toByte()
    }

    /** (class index, share of the pixels) of the classes in [mask], most frequent first. */
    fun classShares(mask: ByteArray): List<Pair<Int, Double>> =
        mask.asList().groupingBy { it.toInt() and 0xff }.eachCount().entries
            .sortedWith(compareBy({ -it.value }, { it.key })).map { it.key to it.value.toDouble() / mask.size }

    /**
     * Depth colour map, near -> far: matplotlib's turbo at 9 even steps, reversed (near is red), interpolated
     * linearly; the same table as mcq.apps.reference.DEPTH_RAMP.
     */
    val DEPTH_RAMP = arrayOf(
        intArrayOf(122, 4, 3), intArrayOf(208, 47, 5), intArrayOf(251, 126, 33), intArrayOf(238, 207, 58),
        intArrayOf(164, 252, 60), intArrayOf(50, 242, 152), intArrayOf(40, 188, 235), intArrayOf(70, 107, 227),
        intArrayOf(48, 18, 59)
    )

    /**
     * Opaque ARGB colours (android.graphics.Color ints) of [depth] from [lo] (near) to [hi] (far); each channel
     * rounded half up; `hi <= lo` colours everything as near.
     */
    fun colourDepth(depth: FloatArray, lo: Float, hi: Float): IntArray {
        val last = DEPTH_RAMP.size - 1
        return IntArray(depth.size) { p ->
            val t = if (hi > lo) ((depth[p] - lo) / (hi - lo)).coerceIn(0f, 1f) else 0f
            val x = t * last
            val i = min(floor(x).toInt(), last - 1)
            val f = x - i
            var argb = 0xff shl 24
            for (c in 0 until 3) {
                val a = DEPTH_RAMP[i][c]
                val b = DEPTH_RAMP[i + 1][c]
                argb = argb or (floor(a + (b - a) * f + 0.5f).toInt() shl (16 - 8 * c))
            }
            argb
        }
    }

    /** Interleaved RGB (0-255) of opaque ARGB pixels (android.graphics.Bitmap's ints). */
    fun rgbOf(argb: IntArray): IntArray = IntArray(argb.size * 3) { j -> (argb[j / 3] shr (16 - 8 * (j % 3))) and 0xff }

    /** The overlay of a float output of the model of [meta]: seg logits [1, K, H, W] or depth [1, 1, H, W]. */
    fun overlay(output: FloatArray, meta: McqMetadata): Overlay {
        val plane = meta.width * meta.height
        check(output.size % plane == 0) { "output ${meta.outputName} has ${output.size} values, not C x $plane" }
        if (meta.task == "depth") {
            val lo = output.reduce { a, b -> min(a, b) }
            val hi = output.reduce { a, b -> max(a, b) }
            return Overlay(colourDepth(output, lo, hi), emptyList(), lo..hi)
        }
        return overlay(argmax(output, output.size / plane, plane), meta)
    }

    /** The overlay of [mask], the class index per pixel of the seg model of [meta] (its labels, or argmax). */
    fun overlay(mask: ByteArray, meta: McqMetadata): Overlay {
        val plane = meta.width * meta.height
        check(mask.size == plane) { "output labels has ${mask.size} values, not $plane" }
        val argb = IntArray(plane) { i ->
            val rgb = meta.palette[mask[i].toInt() and 0xff]
            (0xff shl 24) or (rgb[0] shl 16) or (rgb[1] shl 8) or rgb[2]
        }
        return Overlay(argb, classShares(mask), null)
    }
}

/**
 * What to draw over the image: opaque ARGB at the model's input size; and what the model found: seg the classes
 * (index, share of the pixels; most frequent first), depth its min and max.
 */
class Overlay(
    val argb: IntArray,
    val classes: List<Pair<Int, Double>>,
    val depthRange: ClosedFloatingPointRange<Float>?
)
