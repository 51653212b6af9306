import Foundation

/// Punycode (RFC 3492) encoding of one DNS label, and the A-label form of a whole name.
///
/// Only the direction the planner needs: Unicode → ASCII. The Public Suffix List writes
/// its internationalised rules in Unicode (`公司.cn`); certificates and ACME carry A-labels
/// (`xn--55qx5d.cn`), so the rules are converted once, when the list is loaded.
enum Punycode {
    private static let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700
    private static let initialBias = 72, initialN = 128

    /// The Punycode of `label` (without the `xn--` prefix), or nil on overflow.
    static func encode(_ label: String) -> String? {
        let scalars = label.unicodeScalars.map { Int($0.value) }
        var output: [UInt8] = scalars.filter { $0 < 0x80 }.map { UInt8($0) }
        let basicCount = output.count
        var handled = basicCount
        if basicCount > 0 { output.append(UInt8(ascii: "-")) }
        var n = initialN, delta = 0, bias = initialBias
        while handled < scalars.count {
            guard let m = scalars.filter({ $0 >= n }).min() else { break }
            let (step, o1) = (m - n).multipliedReportingOverflow(by: handled + 1)
            if o1 { return nil }
            delta += step
            n = m
            for c in scalars {
                if c < n { delta += 1 }
                if c == n {
                    var q = delta
                    var k = base
                    while true {
                        let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                        if q < t { break }
                        output.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.append(digit(q))
                    bias = adapt(delta, handled + 1, handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static func digit(_ d: Int) -> UInt8 {
        d < 26 ? UInt8(ascii: "a") + UInt8(d) : UInt8(ascii: "0") + UInt8(d - 26)
    }

    private static func adapt(_ delta: Int, _ numPoints: Int, _ first: Bool) -> Int {
        var d = first ? delta / damp : delta / 2
        d += d / numPoints
        var k = 0
        while d > ((base - tMin) * tMax) / 2 {
            d /= base - tMin
            k += base
        }
        return k + (((base - tMin + 1) * d) / (d + skew))
    }

    /// One label in A-label form: ASCII labels are lowercased; others are lowercased,
    /// NFC-normalised and Punycode-encoded with the `xn--` prefix. This is not a full
    /// UTS #46 mapping (no width folding, no disallowed-character checks): callers that
    /// take names from users validate them elsewhere; here it serves the list's own
    /// rules and names already in (or trivially convertible to) A-label form.
    static func aLabel(_ label: Substring) -> String? {
        if label.utf8.allSatisfy({ $0 < 0x80 }) { return asciiLowercased(label) }
        let normal = String(label).lowercased().precomposedStringWithCanonicalMapping
        guard let encoded = encode(normal) else { return nil }
        return "xn--" + encoded
    }

    /// ASCII-only lowercasing (A-to-Z), byte for byte; leaves other bytes alone.
    static func asciiLowercased<S: StringProtocol>(_ s: S) -> String {
        if !s.utf8.contains(where: { $0 >= 65 && $0 <= 90 }) { return String(s) }
        return String(decoding: s.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
    }
}
