// Latency of an mcq Core ML artifact on an iPhone, measured by XCTest; `deploy/ios/profile.sh` turns the
// measurement into a profile.json. This file is the MCQPerfTests target of apps/ios/McqSegment.xcodeproj, which
// compiles the app's own Segmenter.swift, McqMetadata.swift and Processing.swift beside it (no copy) and runs
// hosted in the app, whose bundle holds the model `mcq export coreml --app ios` installed (McqModel.mlmodelc).
// MCQ_COMPUTE_UNITS (CPU, CPU+GPU or All; profile.sh passes it as TEST_RUNNER_MCQ_COMPUTE_UNITS) picks the compute
// units, All by default. Not run in mcq's development (no Mac or iPhone there).
import CoreML
import XCTest

final class MCQPerfTests: XCTestCase {
    func testModelLatency() throws {
        let asked = ProcessInfo.processInfo.environment["MCQ_COMPUTE_UNITS"] ?? ComputeChoice.all.rawValue
        let compute = try XCTUnwrap(ComputeChoice(rawValue: asked), "MCQ_COMPUTE_UNITS=\(asked): CPU, CPU+GPU or All")
        let segmenter = try Segmenter(bundle: .main, computeUnits: compute.units)
        // the app's input: a mid-grey image at the model's input size; its content does not change the latency
        let grey = [UInt8](repeating: 128, count: segmenter.meta.width * segmenter.meta.height * 4)
        let input = try segmenter.inputBuffer(grey)
        _ = try segmenter.run(input)  // warm-up: the first call compiles for the device
        let options = XCTMeasureOptions()
        options.iterationCount = 20
        measure(metrics: [XCTClockMetric()], options: options) {
            _ = try? segmenter.run(input)
        }
    }
}
