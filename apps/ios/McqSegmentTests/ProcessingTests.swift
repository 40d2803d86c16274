// The app's pre- and post-processing (McqSegment/Processing.swift, compiled into this target too) against mcq's
// reference vector, reference.json (a resource of this target). Rewrite it for your model with
//   mcq app reference --model exports/NAME.mlpackage --out apps/ios/McqSegmentTests/reference.json
import XCTest

final class ProcessingTests: XCTestCase {
    /// The reference vector (mcq.apps.reference.reference_vector): the fields this test reads.
    struct Reference: Decodable {
        struct Input: Decodable { let shape: [Int] }
        struct CoreMLInput: Decodable {
            let scale: Float
            let bias: [Float]
            let std_in_model: [Float]?
        }
        struct Image: Decodable { let width: Int, height: Int, channels: Int, rgb: [UInt8] }
        struct Values: Decodable { let shape: [Int], data: [Float] }
        struct Mask: Decodable { let shape: [Int], data: [UInt8] }
        struct Depth: Decodable { let shape: [Int], data: [Float], min: Float, max: Float, rgb: [Int] }
        let input: Input
        let coreml_input: CoreMLInput?
        let image: Image
        let tensor: Values
        let logits: Values
        let mask: Mask
        let depth: Depth
    }

    private func reference() throws -> Reference {
        let url = try XCTUnwrap(Bundle(for: Self.self).url(forResource: "reference", withExtension: "json"),
                                "reference.json is not in the test bundle")
        return try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }

    /// The app's resize, then what Core ML does with the pixels it is fed (`coreml_input`: pixel * scale + bias,
    /// then / std_in_model inside the model), equals mcq's tensor: exactly, but for the 0.1-0.3% of resized values
    /// torchvision's uint8 resize rounds one 8-bit level the other way.
    func testPreprocessingIsMcqs() throws {
        let ref = try reference()
        let fed = try XCTUnwrap(ref.coreml_input, "write reference.json from a Core ML artifact (it has coreml_input)")
        let (h, w) = (ref.input.shape[2], ref.input.shape[3])
        let resized = Processing.resizeBilinear(ref.image.rgb, width: ref.image.width, height: ref.image.height,
                                                channels: ref.image.channels, outWidth: w, outHeight: h)
        XCTAssertEqual(ref.tensor.shape, [1, 3, h, w])
        let std = fed.std_in_model ?? [1, 1, 1]
        let oneLevel = fed.scale / std.min()!
        var exact = 0
        for c in 0..<3 {
            for i in 0..<(h * w) {
                let got = (Float(resized[i * 3 + c]) * fed.scale + fed.bias[c]) / std[c]
                let diff = abs(got - ref.tensor.data[c * h * w + i])
                XCTAssertLessThanOrEqual(diff, oneLevel + 1e-4, "channel \(c), pixel \(i)")
                if diff < 1e-4 { exact += 1 }
            }
        }
        XCTAssertGreaterThanOrEqual(Double(exact) / Double(3 * h * w), 0.99)
    }

    func testArgmaxIsMcqs() throws {
        let ref = try reference()
        let (k, plane) = (ref.logits.shape[1], ref.logits.shape[2] * ref.logits.shape[3])
        let mask = Processing.argmax(classes: k, pixels: plane) { c, i in ref.logits.data[c * plane + i] }
        XCTAssertEqual(mask, ref.mask.data)
    }

    func testDepthColoursAreMcqs() throws {
        let ref = try reference()
        let rgba = Processing.colourDepth(ref.depth.data, lo: ref.depth.min, hi: ref.depth.max)
        XCTAssertEqual(rgba.count, ref.depth.data.count * 4)
        for p in 0..<ref.depth.data.count {
            XCTAssertEqual(rgba[p * 4 + 3], 255)
            for c in 0..<3 {  // Float here, float32 with float64 rounding in mcq: at most one level apart
                XCTAssertLessThanOrEqual(abs(Int(rgba[p * 4 + c]) - ref.depth.rgb[p * 3 + c]), 1, "pixel \(p)")
            }
        }
    }
}
