import CoreGraphics
import CoreML
import CoreVideo
import Foundation
import UIKit

enum SegmenterError: LocalizedError {
    case badModel(String)
    case badImage(String)

    var errorDescription: String? {
        switch self {
        case .badModel(let why), .badImage(let why): return why
        }
    }
}

/// The Core ML compute units a user can choose.
enum ComputeChoice: String, CaseIterable, Identifiable {
    case cpu = "CPU"
    case cpuAndGPU = "CPU+GPU"
    case all = "All"

    var id: String { rawValue }
    var units: MLComputeUnits {
        switch self {
        case .cpu: return .cpuOnly
        case .cpuAndGPU: return .cpuAndGPU
        case .all: return .all
        }
    }
}

/// A class present in a segmentation, with its share of the pixels.
struct ClassShare: Identifiable {
    let index: Int
    let name: String
    let share: Double
    var id: Int { index }
}

/// One prediction: what to draw over the image, the time of the model's prediction, and per task what it found.
struct Prediction {
    /// seg: the class colours, half transparent; depth: the colour map, opaque. At the model's input size.
    let overlay: UIImage
    let milliseconds: Double
    /// seg: the classes present, most frequent first.
    let classes: [ClassShare]
    /// depth: the smallest and largest depth, in the metadata's units.
    let depthRange: ClosedRange<Float>?
}

/// The app's mcq Core ML model (`McqModel.mlpackage`, which `mcq export coreml --app ios` installs; Xcode compiles
/// it to McqModel.mlmodelc) and its metadata. The normalisation is inside the model (`coreml_input`: its image
/// input's scale and bias, and the std in the graph): the app feeds BGRA pixels stretched to the input size with
/// Pillow's bilinear filter, as mcq does. The perf harness (deploy/ios/MCQPerfTests) compiles this file too.
final class Segmenter {
    static let modelName = "McqModel"
    let model: MLModel
    let meta: McqMetadata

    init(bundle: Bundle = .main, computeUnits: MLComputeUnits = .all) throws {
        guard let url = bundle.url(forResource: Self.modelName, withExtension: "mlmodelc") else {
            throw SegmenterError.badModel("\(Self.modelName).mlmodelc is not in the app: run `mcq export coreml "
                                          + "--checkpoint CKPT --app ios` and build again")
        }
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        model = try MLModel(contentsOf: url, configuration: config)
        meta = try McqMetadata.read(from: model)
    }

    var description: String {
        let what = meta.task == "seg" ? "\(meta.classNames?.count ?? 0) classes"
            : "depth in \(meta.output.units ?? "?") up to \(meta.output.maxDepth ?? 0)"
        return "\(meta.encoder) \(meta.head), \(meta.precision ?? "") \(meta.width)x\(meta.height), \(what)"
    }

    /// A photo: its EXIF orientation applied, drawn as BGRA at its own size, then `predict(bgra:)`.
    func predict(_ image: UIImage) throws -> Prediction {
        guard let cgImage = upright(image).cgImage else { throw SegmenterError.badImage("the image has no bitmap") }
        let (w, h) = (cgImage.width, cgImage.height)
        var bgra = [UInt8](repeating: 0, count: w * h * 4)
        let drawn = bgra.withUnsafeMutableBytes { raw -> Bool in
            guard let context = CGContext(data: raw.baseAddress, width: w, height: h, bitsPerComponent: 8,
                                          bytesPerRow: w * 4, space: CGColorSpaceCreateDeviceRGB(),
                                          bitmapInfo: Self.bgraInfo) else { return false }
            context.draw(cgImage, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        guard drawn else { throw SegmenterError.badImage("cannot draw the image") }
        return try predict(bgra: bgra, width: w, height: h)
    }

    /// A camera frame (32-bit BGRA).
    func predict(_ frame: CVPixelBuffer) throws -> Prediction {
        guard CVPixelBufferGetPixelFormatType(frame) == kCVPixelFormatType_32BGRA else {
            throw SegmenterError.badImage("the camera frame is not 32-bit BGRA")
        }
        CVPixelBufferLockBaseAddress(frame, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(frame, .readOnly) }
        let (w, h) = (CVPixelBufferGetWidth(frame), CVPixelBufferGetHeight(frame))
        let rowBytes = CVPixelBufferGetBytesPerRow(frame)
        guard let base = CVPixelBufferGetBaseAddress(frame) else { throw SegmenterError.badImage("empty frame") }
        var bgra = [UInt8](repeating: 0, count: w * h * 4)
        for y in 0..<h {
            bgra.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: y * w * 4).copyMemory(
                from: base.advanced(by: y * rowBytes), byteCount: w * 4) }
        }
        return try predict(bgra: bgra, width: w, height: h)
    }

    /// BGRA pixels of a `width` x `height` image: stretched to the input size, predicted, post-processed.
    func predict(bgra: [UInt8], width: Int, height: Int) throws -> Prediction {
        let resized = Processing.resizeBilinear(bgra, width: width, height: height, channels: 4,
                                                outWidth: meta.width, outHeight: meta.height)
        let (output, milliseconds) = try run(try inputBuffer(resized))
        let plane = meta.width * meta.height
        if meta.output.name == "labels" {  // class indices [1, H, W] (int32): the argmax was taken in the model
            let labels = MLShapedArray<Int32>(converting: output).scalars
            guard labels.count == plane else {
                throw SegmenterError.badModel("output labels has \(labels.count) values, not \(plane)")
            }
            return try segmentation(labels.map { UInt8($0) }, milliseconds: milliseconds)
        }
        let values = MLShapedArray<Float>(converting: output).scalars  // [1, C, H, W], row-major
        guard values.count % plane == 0 else {
            throw SegmenterError.badModel("output \(meta.output.name) has \(values.count) values, not C x \(plane)")
        }
        if meta.task == "depth" {
            let lo = values.min() ?? 0, hi = values.max() ?? 0
            let overlay = try image(rgba: Processing.colourDepth(values, lo: lo, hi: hi))
            return Prediction(overlay: overlay, milliseconds: milliseconds, classes: [], depthRange: lo...hi)
        }
        let mask = Processing.argmax(classes: values.count / plane, pixels: plane) { k, i in values[k * plane + i] }
        return try segmentation(mask, milliseconds: milliseconds)
    }

    /// The class overlay (the palette's colours, half transparent) and the classes present in `mask`.
    private func segmentation(_ mask: [UInt8], milliseconds: Double) throws -> Prediction {
        let names = meta.classNames ?? [], palette = meta.palette ?? []
        let classes = Processing.classShares(mask).map {
            ClassShare(index: $0.index, name: names[$0.index], share: $0.share)
        }
        var rgba = [UInt8](repeating: 128, count: mask.count * 4)  // alpha 0.5, colours premultiplied
        for (i, m) in mask.enumerated() {
            for c in 0..<3 { rgba[i * 4 + c] = UInt8(palette[Int(m)][c] / 2) }
        }
        return Prediction(overlay: try image(rgba: rgba, premultiplied: true), milliseconds: milliseconds,
                          classes: classes, depthRange: nil)
    }

    /// The model's prediction on an input-size BGRA buffer: its output and the milliseconds it took.
    func run(_ input: CVPixelBuffer) throws -> (MLMultiArray, Double) {
        let features = try MLDictionaryFeatureProvider(dictionary: [meta.input.name: MLFeatureValue(pixelBuffer: input)])
        let start = CFAbsoluteTimeGetCurrent()
        let output = try model.prediction(from: features)
        let milliseconds = 1000 * (CFAbsoluteTimeGetCurrent() - start)
        guard let values = output.featureValue(for: meta.output.name)?.multiArrayValue else {
            throw SegmenterError.badModel("the model has no output \(meta.output.name)")
        }
        return (values, milliseconds)
    }

    /// An input-size pixel buffer holding `bgra` (Core ML converts it to the model's RGB input).
    func inputBuffer(_ bgra: [UInt8]) throws -> CVPixelBuffer {
        var buffer: CVPixelBuffer?
        guard CVPixelBufferCreate(kCFAllocatorDefault, meta.width, meta.height, kCVPixelFormatType_32BGRA, nil,
                                  &buffer) == kCVReturnSuccess, let buffer else {
            throw SegmenterError.badImage("cannot allocate a \(meta.width)x\(meta.height) pixel buffer")
        }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        let rowBytes = CVPixelBufferGetBytesPerRow(buffer), w = meta.width
        let base = CVPixelBufferGetBaseAddress(buffer)!
        bgra.withUnsafeBytes { src in
            for y in 0..<meta.height {
                base.advanced(by: y * rowBytes).copyMemory(from: src.baseAddress!.advanced(by: y * w * 4),
                                                           byteCount: w * 4)
            }
        }
        return buffer
    }

    private static let bgraInfo = CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue

    /// The image with its EXIF orientation applied (photos are often stored rotated).
    private func upright(_ image: UIImage) -> UIImage {
        guard image.imageOrientation != .up else { return image }
        let format = UIGraphicsImageRendererFormat()
        format.scale = image.scale
        return UIGraphicsImageRenderer(size: image.size, format: format).image { _ in
            image.draw(in: CGRect(origin: .zero, size: image.size))
        }
    }

    /// An input-size image of RGBA pixels.
    private func image(rgba: [UInt8], premultiplied: Bool = false) throws -> UIImage {
        let (w, h) = (meta.width, meta.height)
        let alpha: CGImageAlphaInfo = premultiplied ? .premultipliedLast : .noneSkipLast
        guard let provider = CGDataProvider(data: Data(rgba) as CFData),
              let cgImage = CGImage(width: w, height: h, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: w * 4,
                                    space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGBitmapInfo(rawValue: alpha.rawValue),
                                    provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent)
        else { throw SegmenterError.badImage("cannot make the overlay") }
        return UIImage(cgImage: cgImage)
    }
}
