import CoreML
import Foundation

/// The part of an mcq artifact's metadata the app uses (mcq/tasks/metadata.schema.json; the field names are the
/// schema's). `mcq export coreml` stores the whole metadata as JSON under the creator-defined key "mcq" of the model.
struct McqMetadata: Decodable {
    struct Input: Decodable {
        let name: String
        let shape: [Int]  // [1, 3, height, width]
        let resize: String
    }
    struct Output: Decodable {
        let name: String  // seg: "logits", or "labels" (`mcq export --outputs labels`: the argmax is in the model)
        let shape: [Int]  // seg: [1, classes, height, width], labels [1, height, width]; depth: [1, 1, height, width]
        let dtype: String?  // labels: "int32" in Core ML; else float32
        let units: String?  // depth: "metres"
        let maxDepth: Double?  // depth: the largest depth the head predicts

        enum CodingKeys: String, CodingKey {
            case name, shape, dtype, units
            case maxDepth = "max_depth"
        }
    }
    /// How Core ML turns the image's 0-255 RGB pixels into the model's input: pixel * scale + bias per channel,
    /// then / stdInModel inside the model where it is set.
    struct CoreMLInput: Decodable {
        let scale: Float
        let bias: [Float]
        let stdInModel: [Float]?

        enum CodingKeys: String, CodingKey {
            case scale, bias
            case stdInModel = "std_in_model"
        }
    }
    static let tasks = ["seg", "depth"]

    let task: String
    let encoder: String
    let head: String
    let precision: String?
    let classNames: [String]?  // seg
    let palette: [[Int]]?  // seg: class index -> RGB
    let input: Input
    let output: Output
    let coremlInput: CoreMLInput?

    enum CodingKeys: String, CodingKey {
        case task, encoder, head, precision, palette, input, output
        case classNames = "class_names"
        case coremlInput = "coreml_input"
    }

    var height: Int { input.shape[2] }
    var width: Int { input.shape[3] }

    /// Read from the model's creator-defined metadata; a seg or depth model that stretches its input, or an error.
    static func read(from model: MLModel) throws -> McqMetadata {
        let creator = model.modelDescription.metadata[.creatorDefinedKey] as? [String: String]
        guard let json = creator?["mcq"], let data = json.data(using: .utf8) else {
            throw SegmenterError.badModel("the model has no mcq metadata (export it with `mcq export coreml`)")
        }
        return try parse(data)
    }

    /// Parse the metadata JSON; a seg or depth model that stretches its input, or an error.
    static func parse(_ data: Data) throws -> McqMetadata {
        let meta = try JSONDecoder().decode(McqMetadata.self, from: data)
        guard tasks.contains(meta.task) else {
            throw SegmenterError.badModel("a \(meta.task) model: this app shows segmentation and depth models")
        }
        guard meta.input.resize.hasPrefix("stretch") else {
            throw SegmenterError.badModel("input resize \"\(meta.input.resize)\": this app only stretches")
        }
        if meta.task == "seg", meta.classNames == nil || meta.palette == nil {
            throw SegmenterError.badModel("a seg model without class_names and palette in its metadata")
        }
        return meta
    }
}
