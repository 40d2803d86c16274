// Latency of an mcq Core ML artifact on an iPhone, measured by XCTest; `deploy/ios/profile.sh` turns the
// measurement into a profile.json. Add this file to a test target of an app that bundles the .mlpackage
// (Xcode compiles it to .mlmodelc); MCQ_MODEL (set by profile.sh through TEST_RUNNER_MCQ_MODEL) names it,
// e.g. mci0_fpn_512_fp16. Not run in mcq's development (no Mac or iPhone there).
import CoreML
import XCTest

final class MCQPerfTests: XCTestCase {
    func testModelLatency() throws {
        let name = ProcessInfo.processInfo.environment["MCQ_MODEL"] ?? "mci0_fpn_512_fp16"
        let bundle = Bundle(for: MCQPerfTests.self)
        let url = try XCTUnwrap(bundle.url(forResource: name, withExtension: "mlmodelc")
                                ?? Bundle.main.url(forResource: name, withExtension: "mlmodelc"),
                                "\(name).mlmodelc is not in the app or test bundle")
        let config = MLModelConfiguration()
        config.computeUnits = .all
        let model = try MLModel(contentsOf: url, configuration: config)
        // the input: the image the metadata describes (RGB, fixed size); its content does not change the latency
        let input = try XCTUnwrap(model.modelDescription.inputDescriptionsByName["image"]?.imageConstraint)
        let pixels = try XCTUnwrap(Self.grayImage(width: input.pixelsWide, height: input.pixelsHigh))
        let features = try MLDictionaryFeatureProvider(dictionary: ["image": MLFeatureValue(pixelBuffer: pixels)])
        _ = try model.prediction(from: features)  // warm-up: the first call compiles for the device
        let options = XCTMeasureOptions()
        options.iterationCount = 20
        measure(metrics: [XCTClockMetric()], options: options) {
            _ = try? model.prediction(from: features)
        }
    }

    private static func grayImage(width: Int, height: Int) -> CVPixelBuffer? {
        var buffer: CVPixelBuffer?
        CVPixelBufferCreate(kCFAllocatorDefault, width, height, kCVPixelFormatType_32BGRA, nil, &buffer)
        guard let b = buffer else { return nil }
        CVPixelBufferLockBaseAddress(b, [])
        memset(CVPixelBufferGetBaseAddress(b), 128, CVPixelBufferGetDataSize(b))
        CVPixelBufferUnlockBaseAddress(b, [])
        return b
    }
}
