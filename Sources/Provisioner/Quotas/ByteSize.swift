import Foundation

/// A size as people write it for a quota: IEC units (`512MiB`, `2GiB`, `1TiB`; `KiB` too)
/// or plain bytes (`1073741824`). Nothing else: not `-1`, not `1e99`, not `2XB`, not
/// `20 MiB` (a space), not `2GB` (decimal units are ambiguous here: 2 GB is 1.86 GiB), not
/// empty, and nothing that overflows 64 bits. Errors say what was wrong and what is meant.
public struct ByteSize: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var bytes: Int64

    public init(bytes: Int64) { self.bytes = bytes }

    static let units: [(suffix: String, shift: Int64)] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)]

    /// Parses `text`; throws `DesaError(.invalidInput)` naming `what` (`--quota`).
    public init(parsing text: String, what: String = "size") throws {
        func refuse(_ why: String) -> DesaError {
            DesaError.invalid("\(what) \(Quote.show(text)) \(why); write a whole number of bytes or of KiB, MiB, GiB or TiB, like 512MiB or 2GiB")
        }
        guard !text.isEmpty else { throw refuse("is empty") }
        var digits = Substring(text)
        var shift: Int64 = 0
        if let u = Self.units.first(where: { text.hasSuffix($0.suffix) }) {
            digits = text.dropLast(u.suffix.count)
            shift = u.shift
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
            if text.contains(" ") { throw refuse("has a space") }
            throw refuse("is not a size")
        }
        guard digits.count <= 19, let n = Int64(digits) else { throw refuse("is too large") }
        let (v, overflow) = n.multipliedReportingOverflow(by: Int64(1) << shift)
        guard !overflow else { throw refuse("is too large") }
        bytes = v
    }

    public static func < (a: ByteSize, b: ByteSize) -> Bool { a.bytes < b.bytes }

    /// The largest unit it is a whole number of: `2GiB`, `1536MiB`, `1000`.
    public var description: String {
        for u in Self.units where bytes != 0 && bytes % (Int64(1) << u.shift) == 0 {
            return "\(bytes >> u.shift)\(u.suffix)"
        }
        return "\(bytes)"
    }

    /// For people: `1.5 GiB`, `980 MiB`, `12 KiB`, `512 B`.
    public var readable: String { Self.readable(bytes) }

    public static func readable(_ bytes: Int64) -> String {
        let b = Double(bytes)
        for (name, shift) in [("TiB", 40.0), ("GiB", 30.0), ("MiB", 20.0), ("KiB", 10.0)] where b >= pow(2, shift) {
            let v = b / pow(2, shift)
            return v >= 100 ? String(format: "%.0f %@", v, name) : String(format: "%.1f %@", v, name)
        }
        return "\(bytes) B"
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(parsing: text, what: ConfigKeyPath.dotted(decoder.codingPath)) } catch let e as DesaError {
            throw ConfigDecodingError(message: e.message)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension ByteSize: SettingValue {}
