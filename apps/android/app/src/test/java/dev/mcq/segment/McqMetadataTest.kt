package dev.mcq.segment

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import java.io.File

/**
 * The app's reading of mcq's sidecars (McqMetadata.kt), and its processing with what it read, on sidecars of every
 * task as the current mcq writes them: the folder the system property `mcq.sidecars` names holds
 * `accepted/NAME.pte.json`, each with mcq's reference vector of it (`NAME.reference.json`), and `refused/NAME.pte.json`
 * (tests/test_android_jvm.py writes them). Skipped without it.
 */
class McqMetadataTest {
    private fun sidecars(kind: String): List<File> {
        val dir = System.getProperty("mcq.sidecars")
        assumeTrue("no -Dmcq.sidecars=DIR (tests/test_android_jvm.py writes the sidecars)", dir != null)
        val files = File(dir, kind).listFiles().orEmpty().filter { it.name.endsWith(".pte.json") }.sortedBy { it.name }
        assertTrue("no sidecars in $dir/$kind", files.isNotEmpty())
        return files
    }

    /** Each sidecar read, its reference image preprocessed as mcq does, and model outputs of its size drawn. */
    @Test
    fun acceptedSidecarsAreReadAndProcessedAsMcqDoes() {
        for (file in sidecars("accepted")) {
            val name = file.name
            val meta = McqMetadata.parse(file.readText(), name)
            val ref = Reference(File(file.path.removeSuffix(".pte.json") + ".reference.json").readText())
            ref.assertPreprocessing(meta, name)
            if (meta.task == "depth") checkDepth(meta, name) else checkSeg(meta, ref, name)
            println("accepted $name: ${meta.summary}")
        }
    }

    private fun checkDepth(meta: McqMetadata, name: String) {
        assertTrue("$name: units '${meta.units}', max depth ${meta.maxDepth}", meta.units != "" && meta.maxDepth > 0)
        val plane = meta.width * meta.height
        val overlay = Processing.overlay(FloatArray(plane) { it.toFloat() }, meta)
        assertEquals("$name: depth range", 0f..(plane - 1).toFloat(), overlay.depthRange)
        val ends = Processing.DEPTH_RAMP.let { listOf(it.first(), it.last()) }
        for ((pixel, rgb) in listOf(0, plane - 1).zip(ends)) {
            assertEquals("$name: pixel $pixel", argb(rgb), overlay.argb[pixel])
        }
    }

    /** Pixel i of class i % K (K classes, from logits or labels) is drawn in that class's colour. */
    private fun checkSeg(meta: McqMetadata, ref: Reference, name: String) {
        val classes = ref.json.getJSONObject("logits").getJSONArray("shape").getInt(1)
        assertEquals("$name: class names", classes, meta.classNames.size)
        assertEquals("$name: palette", classes, meta.palette.size)
        val plane = meta.width * meta.height
        val overlay = when (meta.outputName) {
            "logits" -> {
                val logits = FloatArray(classes * plane) { if (it % plane % classes == it / plane) 1f else 0f }
                Processing.overlay(logits, meta)
            }
            "labels" -> {
                assertTrue("$name: labels of ${meta.outputDtype}", meta.outputDtype in listOf("uint8", "int32"))
                Processing.overlay(ByteArray(plane) { (it % classes).toByte() }, meta)
            }
            else -> throw AssertionError("$name: output ${meta.outputName}")
        }
        assertArrayEquals("$name: overlay", IntArray(plane) { argb(meta.palette[it % classes]) }, overlay.argb)
        assertEquals("$name: classes found", classes, overlay.classes.size)
    }

    private fun argb(rgb: IntArray) = (0xff shl 24) or (rgb[0] shl 16) or (rgb[1] shl 8) or rgb[2]

    /** Every other sidecar is refused with one line that names it; the lines are printed for the caller to check. */
    @Test
    fun otherSidecarsAreRefusedInOneLine() {
        for (file in sidecars("refused")) {
            val why = try {
                McqMetadata.parse(file.readText(), file.name)
                null
            } catch (e: IllegalArgumentException) {
                e.message
            }
            assertNotNull("${file.name}: accepted", why)
            assertTrue(why, why!!.startsWith("${file.name}: ") && '\n' !in why)
            println("refused $why")
        }
    }
}
