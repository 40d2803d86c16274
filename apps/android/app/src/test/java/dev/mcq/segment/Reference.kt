package dev.mcq.segment

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import java.io.File
import kotlin.math.abs

/** mcq's reference vector (`mcq app reference`): inputs and the answers mcq's own processing gives for them. */
class Reference(text: String) {
    val json = JSONObject(text)

    /**
     * [meta]'s tensor of the reference image ([what] names it in failures) is mcq's, but for the values torchvision's
     * uint8 resize rounds one 8-bit level the other way (the app rounds as Pillow): exactly one level, at most 1%.
     */
    fun assertPreprocessing(meta: McqMetadata, what: String) {
        val image = json.getJSONObject("image")
        val rgb = image.getJSONArray("rgb").ints()
        val tensor = Processing.preprocess(rgb, image.getInt("width"), image.getInt("height"), meta)
        val want = json.getJSONObject("tensor").getJSONArray("data").floats()
        assertEquals("$what: tensor size", want.size, tensor.size)
        val plane = meta.width * meta.height
        var apart = 0
        for (i in tensor.indices) {
            val diff = abs(tensor[i] - want[i])
            if (diff < 1e-5f) continue
            val level = (meta.range[1] - meta.range[0]) / 255f / meta.std[i / plane]
            assertTrue("$what: value $i is ${tensor[i]}, mcq's ${want[i]}: not one level ($level) apart",
                abs(diff - level) < 1e-4f)
            apart++
        }
        assertTrue("$what: $apart of ${tensor.size} values one level apart, over 1%", apart * 100 <= tensor.size)
    }

    companion object {
        /** The file the system property `mcq.reference` names, else the bundled `src/test/resources/reference.json`. */
        fun load(): Reference = Reference(System.getProperty("mcq.reference")?.let { File(it).readText() }
            ?: Reference::class.java.getResource("/reference.json")!!.readText())
    }
}

fun JSONArray.floats() = FloatArray(length()) { getDouble(it).toFloat() }

fun JSONArray.ints() = IntArray(length()) { getInt(it) }
