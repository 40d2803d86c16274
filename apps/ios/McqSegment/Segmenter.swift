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

/// A class present in a segmentation, with its share of the pixels.
struct ClassShare: Identifiable {
    let index: Int
    let name: String
    let share: Double
    var id: Int { index }
}

/// One segmentation: the class index per pixel (row-major, the model's input size), its colour overlay, the time.
struct Segmentation {
    let mask: [UInt8]
    let width: Int
    let height: Int
    let overlay: UIImage
    let milliseconds: Double
    /// The classes present, most frequent first.
    let classes: [ClassShare]
}

/// An exported mcq Core ML segmentation model (the first compiled model in the app bundle) and its metadata.
/// The normalisation is inside the model (`coreml_input`: its image input's scale and bias, and the std in the
/// graph): the app feeds RGB pixels stretched to the input size.
final class Segmenter {
    let model: MLModel
    let meta: McqMetadata

    init() throws {
        guard let url = Bundle.main.urls(forResourcesWithExtension: "mlmodelc", subdirectory: nil)?.first else {
            throw SegmenterError.badModel("no Core ML model in the app: copy an exported .mlpackage into McqSegment/")
        }
        let config = MLModelConfiguration()
        config.computeUnits = .all
        model = try MLModel(contentsOf: url, configuration: config)
        meta = try McqMetadata.read(from: model)
    }

    var description: String {
        "\(meta.encoder) \(meta.head), \(meta.precision ?? "") \(meta.width)x\(meta.height), \(meta.classNames.count) classes"
    }

    func segment(_ image: UIImage) throws -> Segmentation {
        guard let cgImage = upright(image).cgImage else { throw SegmenterError.badImage("the image has no bitmap") }
        let pixels = try pixelBuffer(cgImage, width: meta.width, height: meta.height)
        let input = try MLDictionaryFeatureProvider(dictionary: [meta.input.name: MLFeatureValue(pixelBuffer: pixels)])
        let start = CFAbsoluteTimeGetCurrent()
        let output = try model.prediction(from: input)
        let milliseconds = 1000 * (CFAbsoluteTimeGetCurrent() - start)
        guard let logits = output.featureValue(for: meta.output.name)?.multiArrayValue else {
            throw SegmenterError.badModel("the model has no output \(meta.output.name)")
        }
        let mask = argmax(logits)
        let counts = Dictionary(mask.map { ($0, 1) }, uniquingKeysWith: +)
        let classes = counts.sorted { $0.value > $1.value }.map {
            ClassShare(index: Int($0.key), name: meta.classNames[Int($0.key)], share: Double($0.value) / Double(mask.count))
        }
        return Segmentation(mask: mask, width: meta.width, height: meta.height, overlay: try colourise(mask),
                            milliseconds: milliseconds, classes: classes)
    }

    /// The image with its EXIF orientation applied (photos are often stored rotated).
    private func upright(_ image: UIImage) -> UIImage {
        guard image.imageOrientation != .up else { return image }
        let format = UIGraphicsImageRendererFormat()
        format.scale = image.scale
        return UIGraphicsImageRenderer(size: image.size, format: format).image { _ in
            image.draw(in: CGRect(origin: .zero, size: image.size))
        }
    }

    /// The image stretched to width x height, 32-bit BGRA (Core ML converts it to the model's RGB input).
    private func pixelBuffer(_ image: CGImage, width: Int, height: Int) throws -> CVPixelBuffer {
        var buffer: CVPixelBuffer?
        let attributes = [kCVPixelBufferCGImageCompatibilityKey: true,
                          kCVPixelBufferCGBitmapContextCompatibilityKey: true] as CFDictionary
        guard CVPixelBufferCreate(kCFAllocatorDefault, width, height, kCVPixelFormatType_32BGRA, attributes,
                                  &buffer) == kCVReturnSuccess, let buffer else {
            throw SegmenterError.badImage("cannot allocate a \(width)x\(height) pixel buffer")
        }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        guard let context = CGContext(
            data: CVPixelBufferGetBaseAddress(buffer), width: width, height: height, bitsPerComponent: 8,
            bytesPerRow: CVPixelBufferGetBytesPerRow(buffer), space: CGColorSpaceCreateDeviceRGB(),
            bitmapInfo: CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)
        else { throw SegmenterError.badImage("cannot draw the image") }
        context.interpolationQuality = .high
        context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))  // stretched, as the metadata says
        return buffer
    }

    /// Class index per pixel of logits [1, K, H, W] (the first of equal maxima).
    private func argmax(_ logits: MLMultiArray) -> [UInt8] {
        let shape = logits.shape.map { $0.intValue }
        let strides = logits.strides.map { $0.intValue }
        let (k, h, w) = (shape[1], shape[2], shape[3])
        var mask = [UInt8](repeating: 0, count: h * w)
        for y in 0..<h {
            for x in 0..<w {
                var best = 0
                var top = -Float.infinity
                for c in 0..<k {
                    let v = logits[c * strides[1] + y * strides[2] + x * strides[3]].floatValue
                    if v > top { top = v; best = c }
                }
                mask[y * w + x] = UInt8(best)
            }
        }
        return mask
    }

    /// The mask coloured with the metadata's palette, half transparent.
    private func colourise(_ mask: [UInt8]) throws -> UIImage {
        var rgba = [UInt8](repeating: 0, count: mask.count * 4)
        for (i, m) in mask.enumerated() {
            let colour = meta.palette[Int(m)]
            rgba[i * 4] = UInt8(colour[0] / 2)  // premultiplied by alpha 0.5
            rgba[i * 4 + 1] = UInt8(colour[1] / 2)
            rgba[i * 4 + 2] = UInt8(colour[2] / 2)
            rgba[i * 4 + 3] = 128
        }
        let (w, h) = (meta.width, meta.height)
        guard let provider = CGDataProvider(data: Data(rgba) as CFData),
              let cgImage = CGImage(width: w, height: h, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: w * 4,
                                    space: CGColorSpaceCreateDeviceRGB(),
                                    bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.premultipliedLast.rawValue),
                                    provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent)
        else { throw SegmenterError.badImage("cannot make the overlay") }
        return UIImage(cgImage: cgImage)
    }
}
