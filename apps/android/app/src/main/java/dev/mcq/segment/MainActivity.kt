package dev.mcq.segment

import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.CheckBox
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import java.util.Locale
import java.util.concurrent.Executors

/** Pick a photo, segment it with the bundled model on a background thread, show the overlay, legend and time. */
class MainActivity : ComponentActivity() {
    private val worker = Executors.newSingleThreadExecutor()
    private var segmenter: Segmenter? = null

    private val pick = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        uri?.let { segment(it) }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        findViewById<Button>(R.id.choose).apply {
            isEnabled = false
            setOnClickListener {
                pick.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
            }
        }
        findViewById<CheckBox>(R.id.show_overlay).setOnCheckedChangeListener { _, checked ->
            findViewById<ImageView>(R.id.overlay).visibility = if (checked) View.VISIBLE else View.INVISIBLE
        }
        status("Loading the model ...")
        worker.execute {
            try {
                val loaded = Segmenter(this)
                runOnUiThread {
                    segmenter = loaded
                    findViewById<TextView>(R.id.model_info).text = loaded.description
                    findViewById<Button>(R.id.choose).isEnabled = true
                    status("Choose a photo.")
                }
            } catch (e: Exception) {
                runOnUiThread { status("Error: ${e.message}") }
            }
        }
    }

    private fun segment(uri: Uri) {
        val model = segmenter ?: return
        status("Segmenting ...")
        worker.execute {
            try {
                val source = ImageDecoder.createSource(contentResolver, uri)
                val photo = ImageDecoder.decodeBitmap(source) { decoder, _, _ ->
                    decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE  // getPixels needs a software bitmap
                }.copy(Bitmap.Config.ARGB_8888, false)
                val result = model.segment(photo)
                runOnUiThread { show(photo, result, model.meta) }
            } catch (e: Exception) {
                runOnUiThread { status("Error: ${e.message}") }
            }
        }
    }

    private fun show(photo: Bitmap, result: Segmentation, meta: McqMetadata) {
        findViewById<ImageView>(R.id.photo).setImageBitmap(photo)
        // nearest-neighbour scaling keeps class boundaries crisp: scale the small mask up without filtering
        val overlay = Bitmap.createScaledBitmap(result.overlay, photo.width, photo.height, false)
        findViewById<ImageView>(R.id.overlay).setImageBitmap(overlay)
        val legend = findViewById<LinearLayout>(R.id.legend)
        legend.removeAllViews()
        for ((index, share) in result.classes) {
            val (r, g, b) = meta.palette[index].let { Triple(it[0], it[1], it[2]) }
            legend.addView(TextView(this).apply {
                text = String.format(Locale.US, "■ %s (%.1f%%)", meta.classNames[index], 100 * share)
                setTextColor(android.graphics.Color.rgb(r, g, b))
            })
        }
        status(String.format(Locale.US, "%.1f ms per image", result.milliseconds))
    }

    private fun status(text: String) {
        findViewById<TextView>(R.id.status).text = text
    }

    override fun onDestroy() {
        worker.shutdown()
        super.onDestroy()
    }
}
