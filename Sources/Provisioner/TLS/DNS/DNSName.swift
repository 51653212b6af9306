/// DNS names as desa sends them: lower-case ASCII, no trailing dot, labels of letters, digits
/// and inner hyphens (LDH), or such a label after one leading underscore (`_acme-challenge`).
enum DNSName {
    /// The name in canonical form, or `DesaError(.invalidInput)` naming what is wrong with it.
    static func validate(_ raw: String, what: String = "the DNS name") throws -> String {
        var name = raw
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty else { throw DesaError.invalid("\(what) is empty") }
        guard name.utf8.count <= 253 else {
            throw DesaError.invalid("\(what) \(Quote.show(raw)) is longer than 253 characters")
        }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if let problem = labelProblem(Array(label.utf8)) {
                throw DesaError.invalid("\(what) \(Quote.show(raw)) is not a DNS name: label \(Quote.show(String(label))) \(problem)")
            }
        }
        return String(decoding: name.utf8.map(lower), as: UTF8.self)
    }

    /// Why a label is refused, or nil.
    private static func labelProblem(_ label: [UInt8]) -> String? {
        if label.isEmpty { return "is empty" }
        if label.count > 63 { return "is longer than 63 characters" }
        let body = label.first == UInt8(ascii: "_") ? Array(label.dropFirst()) : label
        if body.isEmpty { return "has nothing after the underscore" }
        for b in body where !(isLetter(b) || isDigit(b) || b == UInt8(ascii: "-")) {
            return "has the character \(Quote.show(String(decoding: [b], as: UTF8.self))) (only letters, digits and hyphens are allowed)"
        }
        if body.first == UInt8(ascii: "-") || body.last == UInt8(ascii: "-") {
            return "starts or ends with a hyphen"
        }
        return nil
    }

    /// Wire form of a validated name (uncompressed, ends with the root label).
    static func wire(_ name: String) -> [UInt8] {
        var out: [UInt8] = []
        if !name.isEmpty {
            for label in name.split(separator: ".") {
                out.append(UInt8(label.utf8.count))
                out.append(contentsOf: label.utf8.map(lower))
            }
        }
        out.append(0)
        return out
    }

    /// True when `name` is `zone` or lies below it (both canonical).
    static func isInside(_ name: String, zone: String) -> Bool {
        zone.isEmpty || name == zone || name.hasSuffix("." + zone)
    }

    /// The parent of a name, nil for a single label.
    static func parent(_ name: String) -> String? {
        guard let dot = name.firstIndex(of: ".") else { return nil }
        return String(name[name.index(after: dot)...])
    }

    static func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b + 32 : b }
    private static func isLetter(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 65 && b <= 90) }
    private static func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
}
