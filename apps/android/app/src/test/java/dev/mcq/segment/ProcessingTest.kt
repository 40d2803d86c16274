package dev.mcq.segment

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import kotlin.math.abs

/**
 * The app's pre- and post-processing (Processing.kt) against mcq's reference vector, `src/test/resources/
 * reference.json`. Rewrite it for your model with
 *   mcq app reference --model exports/NAME.pte --out apps/android/app/src/test/resources/reference.json
 */
class ProcessingTest {
    private val ref = JSONObject(javaClass.getResource("/reference.json")!!.readText())

    private fun JSONArray.floats() = FloatArray(length()) { getDouble(it).toFloat() }
    private fun JSONArray.ints() = IntArray(length()) { getInt(it) }

    /** The metadata the reference was written from: its input, with what the app reads of the rest left blank. */
    private fun meta(): McqMetadata {
        val input = ref.getJSONObject("input")
        val shape = input.getJSONArray("shape")
        return McqMetadata(
            task = "seg", encoder = "", head = "", precision = "", classNames = emptyList(), palette = emptyList(),
            height = shape.getInt(2), width = shape.getInt(3), range = input.getJSONArray("range").floats(),
            mean = input.getJSONArray("mean").floats(), std = input.getJSONArray("std").floats(),
            outputName = "", outputDtype = "", units = "", maxDepth = 0.0,
        )
    }

    /** Exactly mcq's tensor, but for the 0.1-0.3% of resized values torchvision's uint8 resize rounds one 8-bit
     * level the other way. */
    @Test
    fun preprocessingIsMcqs() {
        val meta = meta()
        val image = ref.getJSONObject("image")
        val rgb = image.getJSONArray("rgb").ints()
        val tensor = Processing.preprocess(rgb, image.getInt("width"), image.getInt("height"), meta)
        val want = ref.getJSONObject("tensor").getJSONArray("data").floats()
        assertEquals(want.size, tensor.size)
        val oneLevel = 1f / 255f / meta.std.min()
        val diffs = tensor.indices.map { abs(tensor[it] - want[it]) }
        assertTrue("largest difference ${diffs.max()}", diffs.max() <= oneLevel + 1e-5f)
        assertTrue(diffs.count { it < 1e-5f } >= 0.99 * diffs.size)
    }

    @Test
    fun argmaxIsMcqs() {
        val logits = ref.getJSONObject("logits")
        val shape = logits.getJSONArray("shape").ints()
        val mask = Processing.argmax(logits.getJSONArray("data").floats(), shape[1], shape[2] * shape[3])
        val want = ref.getJSONObject("mask").getJSONArray("data").ints()
        assertArrayEquals(want, IntArray(mask.size) { mask[it].toInt() and 0xff })
    }

    @Test
    fun depthColoursAreMcqs() {
        val depth = ref.getJSONObject("depth")
        val argb = Processing.colourDepth(
            depth.getJSONArray("data").floats(), depth.getDouble("min").toFloat(), depth.getDouble("max").toFloat(),
        )
        val want = depth.getJSONArray("rgb").ints()
        for (p in argb.indices) {
            assertEquals(0xff, argb[p] ushr 24)
            for (c in 0 until 3) { // Float here, float32 with float64 rounding in mcq: at most one level apart
                val got = (argb[p] shr (16 - 8 * c)) and 0xff
                assertTrue("pixel $p channel $c: $got vs ${want[p * 3 + c]}", abs(got - want[p * 3 + c]) <= 1)
            }
        }
    }
}
