package dev.mcq.segment

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.graphics.Matrix
import android.graphics.drawable.BitmapDrawable
import android.graphics.drawable.GradientDrawable
import android.net.Uri
import android.os.Bundle
import android.view.View
import android.view.ViewGroup
import android.widget.Button
import android.widget.CheckBox
import android.widget.FrameLayout
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.AspectRatio
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.Locale
import java.util.concurrent.Executors

/**
 * Pick a photo or run the back camera (CameraX preview + ImageAnalysis); the bundled model runs on a background
 * thread; the overlay (classes, or the depth colour map), the legend and the time per image or frame are shown.
 */
class MainActivity : ComponentActivity() {
    private val worker = Executors.newSingleThreadExecutor()
    private var segmenter: Segmenter? = null
    private var camera: ProcessCameraProvider? = null

    private val pick = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        uri?.let { predictPhoto(it) }
    }
    private val cameraPermission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else status("No camera: allow the camera permission in the system settings.")
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        findViewById<Button>(R.id.choose).setOnClickListener {
            stopCamera()
            pick.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.camera).setOnClickListener {
            val granted = ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) ==
                PackageManager.PERMISSION_GRANTED
            when {
                camera != null -> stopCamera()
                granted -> startCamera()
                else -> cameraPermission.launch(Manifest.permission.CAMERA)
            }
        }
        findViewById<CheckBox>(R.id.show_overlay).setOnCheckedChangeListener { _, checked ->
            findViewById<ImageView>(R.id.overlay).visibility = if (checked) View.VISIBLE else View.INVISIBLE
        }
        findViewById<View>(R.id.depth_bar).background = GradientDrawable(
            GradientDrawable.Orientation.LEFT_RIGHT,
            Processing.DEPTH_RAMP.map { android.graphics.Color.rgb(it[0], it[1], it[2]) }.toIntArray(),
        )
        enableInput(false)
        status("Loading the model ...")
        worker.execute {
            try {
                val loaded = Segmenter(this)
                runOnUiThread {
                    segmenter = loaded
                    findViewById<TextView>(R.id.model_info).text = loaded.description
                    enableInput(true)
                    status("Choose a photo or start the camera.")
                }
            } catch (e: Exception) {
                runOnUiThread { status("Error: ${e.message}") }
            }
        }
    }

    private fun enableInput(enabled: Boolean) {
        findViewById<Button>(R.id.choose).isEnabled = enabled
        findViewById<Button>(R.id.camera).isEnabled = enabled
    }

    private fun predictPhoto(uri: Uri) {
        val model = segmenter ?: return
        status("Running the model ...")
        worker.execute {
            try {
                val source = ImageDecoder.createSource(contentResolver, uri)
                val photo = ImageDecoder.decodeBitmap(source) { decoder, _, _ ->
                    decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE // getPixels needs a software bitmap
                }.copy(Bitmap.Config.ARGB_8888, false)
                val result = model.predict(photo)
                runOnUiThread {
                    findViewById<ImageView>(R.id.photo).setImageBitmap(photo)
                    show(result, model.meta, "image")
                }
            } catch (e: Exception) {
                runOnUiThread { status("Error: ${e.message}") }
            }
        }
    }

    private fun startCamera() {
        val model = segmenter ?: return
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val view = findViewById<PreviewView>(R.id.preview)
            val preview = Preview.Builder().setTargetAspectRatio(AspectRatio.RATIO_4_3).build()
            preview.setSurfaceProvider(view.surfaceProvider)
            val analysis = ImageAnalysis.Builder()
                .setTargetAspectRatio(AspectRatio.RATIO_4_3)
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST) // latency per frame, no queue
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(worker) { frame -> predictFrame(model, frame) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
            camera = provider
            val frame = findViewById<FrameLayout>(R.id.frame)
            frame.layoutParams = frame.layoutParams.apply { height = frame.width * 4 / 3 } // portrait 3:4, as framed
            findViewById<ImageView>(R.id.photo).visibility = View.GONE
            view.visibility = View.VISIBLE
            findViewById<Button>(R.id.camera).setText(R.string.stop_camera)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun predictFrame(model: Segmenter, frame: ImageProxy) {
        try {
            val upright = frame.toBitmap().let { bitmap ->
                val turn = Matrix().apply { postRotate(frame.imageInfo.rotationDegrees.toFloat()) }
                Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, turn, true)
            }
            val result = model.predict(upright)
            runOnUiThread { if (camera != null) show(result, model.meta, "frame") }
        } catch (e: Exception) {
            runOnUiThread { status("Error: ${e.message}") }
        } finally {
            frame.close()
        }
    }

    private fun stopCamera() {
        camera?.unbindAll()
        camera = null
        val frame = findViewById<FrameLayout>(R.id.frame)
        frame.layoutParams = frame.layoutParams.apply { height = ViewGroup.LayoutParams.WRAP_CONTENT }
        findViewById<PreviewView>(R.id.preview).visibility = View.GONE
        findViewById<ImageView>(R.id.photo).visibility = View.VISIBLE
        findViewById<Button>(R.id.camera).setText(R.string.camera)
    }

    private fun show(result: Prediction, meta: McqMetadata, unit: String) {
        val overlay = findViewById<ImageView>(R.id.overlay)
        // scaled up from the input size without filtering: class boundaries stay crisp
        overlay.setImageDrawable(BitmapDrawable(resources, result.overlay).apply { isFilterBitmap = false })
        overlay.alpha = if (meta.task == "seg") 0.5f else 1f
        val legend = findViewById<LinearLayout>(R.id.legend)
        legend.removeAllViews()
        for ((index, share) in result.classes) {
            val (r, g, b) = meta.palette[index].let { Triple(it[0], it[1], it[2]) }
            legend.addView(TextView(this).apply {
                text = String.format(Locale.US, "■ %s (%.1f%%)", meta.classNames[index], 100 * share)
                setTextColor(android.graphics.Color.rgb(r, g, b))
            })
        }
        val range = result.depthRange
        findViewById<View>(R.id.depth_legend).visibility = if (range != null) View.VISIBLE else View.GONE
        if (range != null) {
            val unitName = if (meta.units == "metres") "m" else meta.units
            findViewById<TextView>(R.id.depth_min).text = String.format(Locale.US, "%.2f %s", range.start, unitName)
            findViewById<TextView>(R.id.depth_max).text = String.format(Locale.US, "%.2f %s", range.endInclusive, unitName)
        }
        status(String.format(Locale.US, "%.1f ms per %s", result.milliseconds, unit))
    }

    private fun status(text: String) {
        findViewById<TextView>(R.id.status).text = text
    }

    override fun onDestroy() {
        camera?.unbindAll()
        worker.shutdown()
        super.onDestroy()
    }
}
