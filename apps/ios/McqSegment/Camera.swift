import AVFoundation
import CoreVideo

/// The back camera as a stream of portrait 32-bit BGRA frames (640x480 preset: the model stretches to its own input
/// size anyway). `onFrame` runs on the camera's queue, one frame at a time; frames that arrive while it runs are
/// dropped, so the shown latency is the model's, not a queue's.
final class Camera: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    private let session = AVCaptureSession()
    private let queue = DispatchQueue(label: "dev.mcq.segment.camera")
    var onFrame: ((CVPixelBuffer) -> Void)?

    /// Ask for access (Info.plist: NSCameraUsageDescription), configure once, start; false when refused.
    func start() async -> Bool {
        guard await AVCaptureDevice.requestAccess(for: .video) else { return false }
        return await withCheckedContinuation { done in
            queue.async { [self] in
                if session.inputs.isEmpty, !configure() { return done.resume(returning: false) }
                session.startRunning()
                done.resume(returning: true)
            }
        }
    }

    func stop() {
        queue.async { [session] in session.stopRunning() }
    }

    private func configure() -> Bool {
        session.beginConfiguration()
        defer { session.commitConfiguration() }
        session.sessionPreset = .vga640x480
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: device), session.canAddInput(input) else { return false }
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        guard session.canAddOutput(output) else { return false }
        session.addOutput(output)
        if let connection = output.connection(with: .video), connection.isVideoRotationAngleSupported(90) {
            connection.videoRotationAngle = 90  // portrait
        }
        return true
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                       from connection: AVCaptureConnection) {
        guard let frame = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        onFrame?(frame)
    }
}
