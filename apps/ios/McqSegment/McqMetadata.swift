import CoreML
import Foundation

/// The part of an mcq artifact's metadata the app uses (mcq/export/metadata.schema.json). `mcq export coreml`
/// stores the whole metadata as JSON under the creator-defined key "mcq" of the model.
struct McqMetadata: Decodable {
    struct Input: Decodable {
        let name: String
        let shape: [Int]  // [1, 3, height, width]
        let resize: String
    }
    struct Output: Decodable {
        let name: String
        let shape: [Int]  // seg: [1, classes, height, width]
    }
    let task: String
    let encoder: String
    let head: String
    let precision: String?
    let classNames: [String]
    let palette: [[Int]]
    let input: Input
    let output: Output

    enum CodingKeys: String, CodingKey {
        case task, encoder, head, precision, palette, input, output
        case classNames = "class_names"
    }

    var height: Int { input.shape[2] }
    var width: Int { input.shape[3] }

    /// Read from the model's creator-defined metadata; a segmentation model that stretches its input, or an error.
    static func read(from model: MLModel) throws -> McqMetadata {
        let creator = model.modelDescription.metadata[.creatorDefinedKey] as? [String: String]
        guard let json = creator?["mcq"], let data = json.data(using: .utf8) else {
            throw SegmenterError.badModel("the model has no mcq metadata (export it with `mcq export coreml`)")
        }
        let meta = try JSONDecoder().decode(McqMetadata.self, from: data)
        guard meta.task == "seg" else {
            throw SegmenterError.badModel("a \(meta.task) model: this app shows segmentation models")
        }
        guard meta.input.resize.hasPrefix("stretch") else {
            throw SegmenterError.badModel("input resize \"\(meta.input.resize)\": this app only stretches")
        }
        return meta
    }
}
