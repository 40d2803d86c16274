plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.mcq.segment"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.mcq.segment"
        minSdk = 28  // ImageDecoder
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }
    buildTypes {
        release { isMinifyEnabled = false }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    androidResources { noCompress += "pte" }
}

dependencies {
    // The ExecuTorch runtime must be the version that wrote the .pte: mcq pins executorch==1.5.1 (pyproject.toml).
    implementation("org.pytorch:executorch-android:1.5.1")
    implementation("androidx.activity:activity-ktx:1.9.3")
    val camerax = "1.3.4" // ImageProxy.toBitmap needs 1.3
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")
    // JVM unit tests (src/test): Android's own org.json is a stub there
    testImplementation("junit:junit:4.13.2")
    testImplementation("org.json:json:20240303")
}
