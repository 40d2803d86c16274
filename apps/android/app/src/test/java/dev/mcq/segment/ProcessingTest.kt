package dev.mcq.segment

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import kotlin.math.abs

/**
 * The app's pre- and post-processing (Processing.kt) against mcq's reference vector: `src/test/resources/
 * reference.json`, or the file the system property `mcq.reference` names. Rewrite the bundled one for your model with
 *   mcq app reference --model exports/NAME.pte --out apps/android/app/src/test/resources/reference.json
 */
class ProcessingTest {
    private val reference = Reference.load()
    private val ref = reference.json

    /** The metadata the reference was written from: its input, with what the app reads of the rest left blank. */
    private fun meta(): McqMetadata {
        val input = ref.getJSONObject("input")
        val shape = input.getJSONArray("shape")
        return McqMetadata(
            task = "seg", encoder = "", head = "", precision = "", classNames = emptyList(), palette = emptyList(),
            height = shape.getInt(2), width = shape.getInt(3), range = input.getJSONArray("range").floats(),
            mean = input.getJSONArray("mean").floats(), std = input.getJSONArray("std").floats(),
            outputName = "", outputDtype = "", units = "", maxDepth = 0.0
        )
    }

    @Test
    fun preprocessingIsMcqs() = reference.assertPreprocessing(meta(), "reference")

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
            depth.getJSONArray("data").floats(), depth.getDouble("min").toFloat(), depth.getDouble("max").toFloat()
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
