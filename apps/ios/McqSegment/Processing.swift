import Foundation

/// The app's pre- and post-processing on plain arrays, as mcq does it (`mcq.apps.reference`; the web app's mcq.js
/// is the same code in JavaScript). McqSegmentTests checks it against mcq's reference vector.
enum Processing {
    private static let precisionBits = 32 - 8 - 2  // Pillow's fixed point for 8-bit resampling
    private static let one = 1 << precisionBits

    /// Resize interleaved 8-bit pixels (`channels` per pixel, `width` x `height`) to `outWidth` x `outHeight` as
    /// Pillow's BILINEAR does (antialiased when shrinking, 8-bit fixed-point weights, horizontal pass first).
    static func resizeBilinear(_ pixels: [UInt8], width: Int, height: Int, channels: Int,
                               outWidth: Int, outHeight: Int) -> [UInt8] {
        var out = pixels
        if outWidth != width {
            out = pass(out, width: width, height: height, channels: channels, outSize: outWidth, horizontal: true)
        }
        if outHeight != height {
            out = pass(out, width: outWidth, height: height, channels: channels, outSize: outHeight, horizontal: false)
        }
        return out
    }

    private static func coefficients(inSize: Int, outSize: Int) -> [(start: Int, weights: [Int])] {
        let scale = Double(inSize) / Double(outSize)
        let support = max(scale, 1.0)  // the bilinear filter's support (1) widened when shrinking
        return (0..<outSize).map { xx in
            let center = (Double(xx) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)
            let count = min(Int(center + support + 0.5), inSize) - xmin
            let w = (0..<count).map { x -> Double in
                let t = abs((Double(x + xmin) - center + 0.5) / support)
                return t < 1 ? 1 - t : 0
            }
            let total = w.reduce(0, +)
            let fixed = w.map { v -> Int in
                let k = total != 0 ? v / total : v
                return k < 0 ? Int(-0.5 + k * Double(one)) : Int(0.5 + k * Double(one))
            }
            return (xmin, fixed)
        }
    }

    private static func pass(_ src: [UInt8], width: Int, height: Int, channels: Int, outSize: Int,
                             horizontal: Bool) -> [UInt8] {
        let coeffs = coefficients(inSize: horizontal ? width : height, outSize: outSize)
        let (ow, oh) = horizontal ? (outSize, height) : (width, outSize)
        var out = [UInt8](repeating: 0, count: ow * oh * channels)
        for y in 0..<oh {
            for x in 0..<ow {
                let (start, k) = coeffs[horizontal ? x : y]
                for c in 0..<channels {
                    var acc = one / 2
                    for i in 0..<k.count {
                        let idx = horizontal ? (y * width + start + i) * channels + c
                                             : ((start + i) * width + x) * channels + c
                        acc += Int(src[idx]) * k[i]
                    }
                    out[(y * ow + x) * channels + c] = UInt8(clamping: acc >> precisionBits)
                }
            }
        }
        return out
    }

    /// Class index per pixel of logits [1, K, H, W] read through `value(k, i)` (class k, pixel i = y * W + x):
    /// the first of equal maxima, as numpy's argmax.
    static func argmax(classes: Int, pixels: Int, value: (Int, Int) -> Float) -> [UInt8] {
        (0..<pixels).map { i in
            var best = 0
            var top = value(0, i)
            for k in 1..<max(classes, 1) {
                let v = value(k, i)
                if v > top { top = v; best = k }
            }
            return UInt8(best)
        }
    }

    /// Depth colour map, near -> far: matplotlib's turbo at 9 even steps, reversed (near is red), interpolated
    /// linearly; the same table as mcq.apps.reference.DEPTH_RAMP.
    static let depthRamp: [[Float]] = [[122, 4, 3], [208, 47, 5], [251, 126, 33], [238, 207, 58], [164, 252, 60],
                                       [50, 242, 152], [40, 188, 235], [70, 107, 227], [48, 18, 59]]

    /// RGBA pixels (opaque) colouring `depth` from `lo` (near) to `hi` (far); each channel rounded half up;
    /// `hi <= lo` colours everything as near.
    static func colourDepth(_ depth: [Float], lo: Float, hi: Float) -> [UInt8] {
        let last = depthRamp.count - 1
        var out = [UInt8](repeating: 255, count: depth.count * 4)
        for (p, d) in depth.enumerated() {
            let t = hi > lo ? min(max((d - lo) / (hi - lo), 0), 1) : 0
            let x = t * Float(last)
            let i = min(Int(x.rounded(.down)), last - 1)
            let f = x - Float(i)
            for c in 0..<3 {
                let a = depthRamp[i][c], b = depthRamp[i + 1][c]
                out[p * 4 + c] = UInt8((a + (b - a) * f + 0.5).rounded(.down))
            }
        }
        return out
    }

    /// The classes present in `mask` (index, share of the pixels), most frequent first.
    static func classShares(_ mask: [UInt8]) -> [(index: Int, share: Double)] {
        let counts = Dictionary(mask.map { (Int($0), 1) }, uniquingKeysWith: +)
        return counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
            .map { ($0.key, Double($0.value) / Double(mask.count)) }
    }
}
