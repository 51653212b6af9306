import Foundation

/// The strict grammars that every name must pass before it reaches a file, a path,
/// a config or a command line. Each check throws a `DesaError` saying why.
public enum Names {
    public static let maxNameLength = 64
    static let nameMarks: Set<Character> = [" ", "'", "’", "‘", ".", ",", "/", "(", ")", "-"]
    static let apostrophes: Set<Character> = ["'", "’", "‘", "`", "ʼ"]

    /// A village or kecamatan name as Kemendagri writes it: Latin letters (accents
    /// allowed), digits, spaces and `' ’ . , / ( ) -`; starts with a letter or digit.
    public static func validateName(_ raw: String, what: String = "village name") throws {
        let shown = Quote.show(raw)
        if raw.isEmpty || raw.allSatisfy(\.isWhitespace) { throw DesaError.invalid("\(what) is empty") }
        if raw.count > maxNameLength {
            throw DesaError.invalid("\(what) \(shown) is \(raw.count) characters long; the limit is \(maxNameLength)")
        }
        if let bad = raw.unicodeScalars.first(where: { $0.properties.generalCategory == .control || $0.properties.generalCategory == .format }) {
            throw DesaError.invalid("\(what) \(shown) contains a control character (U+\(String(bad.value, radix: 16, uppercase: true)))")
        }
        for ch in raw where !(isLatinLetter(ch) || ch.isASCII && ch.isNumber || nameMarks.contains(ch)) {
            if ch.isLetter {
                throw DesaError.invalid("\(what) \(shown) contains \(Quote.show(String(ch))), which is not a Latin letter; names must be written in the Latin script")
            }
            throw DesaError.invalid("\(what) \(shown) contains the character \(Quote.show(String(ch))); allowed are letters, digits, spaces and ' ’ . , / ( ) -")
        }
        guard let first = raw.first, isLatinLetter(first) || first.isNumber else {
            throw DesaError.invalid("\(what) \(shown) must start with a letter or a digit")
        }
        if raw.contains("..") || raw.contains("//") {
            throw DesaError.invalid("\(what) \(shown) contains a repeated '.' or '/'")
        }
        if raw.hasSuffix(" ") { throw DesaError.invalid("\(what) \(shown) ends with a space") }
    }

    static func isLatinLetter(_ ch: Character) -> Bool {
        guard ch.isLetter else { return false }
        return ch.unicodeScalars.allSatisfy { s in
            switch s.value {
            case 0x41...0x5A, 0x61...0x7A: return true
            case 0xC0...0x24F: return s.value != 0xD7 && s.value != 0xF7
            case 0x1E00...0x1EFF: return true
            case 0x300...0x36F: return true  // combining accents after a Latin base
            default: return false
            }
        }
    }

    /// Folds a validated name into a DNS label: ASCII, lowercase, apostrophes dropped,
    /// every other run of non-alphanumerics one hyphen, at most 63 characters.
    public static func slugify(_ name: String) throws -> String {
        try validateName(name)
        var out = ""
        var pendingHyphen = false
        for ch in name {
            if apostrophes.contains(ch) { continue }
            let folded = asciiFold(ch)
            if folded.isEmpty || !folded.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
                pendingHyphen = true
                continue
            }
            if pendingHyphen && !out.isEmpty { out.append("-") }
            pendingHyphen = false
            out += folded.lowercased()
        }
        let label = truncateLabel(out)
        if label.isEmpty { throw DesaError.invalid("village name \(Quote.show(name)) has no letters or digits to make a DNS label from") }
        try validateSlug(label)
        return label
    }

    static let specialFolds: [Character: String] = [
        "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
        "ł": "l", "Ł": "L", "œ": "oe", "Œ": "OE", "þ": "th", "ð": "d", "ı": "i",
    ]

    static func asciiFold(_ ch: Character) -> String {
        if ch.isASCII { return String(ch) }
        if let s = specialFolds[ch] { return s }
        let base = String(ch).decomposedStringWithCanonicalMapping.unicodeScalars
            .filter { !(0x300...0x36F).contains($0.value) }
        return String(String.UnicodeScalarView(base))
    }

    /// Cuts a label to 63 characters without leaving a trailing hyphen.
    public static func truncateLabel(_ s: String, max: Int = 63) -> String {
        var t = String(s.prefix(max))
        while t.hasSuffix("-") { t.removeLast() }
        return t
    }

    /// A slug is a DNS label: a–z, 0–9 and hyphens, 1–63 characters, no hyphen at
    /// either end, and no `--` in positions 3–4 (reserved for punycode).
    public static func validateSlug(_ s: String) throws {
        let shown = Quote.show(s)
        if s.isEmpty { throw DesaError.invalid("slug is empty") }
        if s.count > 63 { throw DesaError.invalid("slug \(shown) is \(s.count) characters long; a DNS label holds at most 63") }
        guard s.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
            throw DesaError.invalid("slug \(shown) may contain only lowercase a-z, digits and hyphens")
        }
        if s.hasPrefix("-") || s.hasSuffix("-") { throw DesaError.invalid("slug \(shown) must not start or end with a hyphen") }
        if s.count >= 4 && Array(s)[2] == "-" && Array(s)[3] == "-" {
            throw DesaError.invalid("slug \(shown) has '--' in positions 3-4, which DNS reserves for punycode")
        }
    }

    /// A domain name for an alias or the regency domain: lowercase labels, at least two,
    /// at most 253 characters. Returns the normalized form (lowercase, no trailing dot).
    @discardableResult
    public static func validateDomain(_ raw: String) throws -> String {
        var d = raw.lowercased()
        if d.hasSuffix(".") { d.removeLast() }
        let shown = Quote.show(raw)
        if d.isEmpty { throw DesaError.invalid("domain is empty") }
        if d.count > 253 { throw DesaError.invalid("domain \(shown) is longer than 253 characters") }
        let labels = d.split(separator: ".", omittingEmptySubsequences: false)
        if labels.count < 2 { throw DesaError.invalid("domain \(shown) needs at least two labels, like cileunyikulon.desa.id") }
        for label in labels {
            let l = String(label)
            if l.hasPrefix("xn--") && l.count > 4 {
                if !l.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) || l.hasSuffix("-") || l.count > 63 {
                    throw DesaError.invalid("domain \(shown) has an invalid label \(Quote.show(l))")
                }
                continue
            }
            do { try validateSlug(l) } catch let e as DesaError {
                throw DesaError.invalid("domain \(shown) has an invalid label: \(e.message)")
            }
        }
        if labels.last!.allSatisfy(\.isNumber) { throw DesaError.invalid("domain \(shown) looks like an IP address") }
        return d
    }

    /// A prefix for tenant user names: a lowercase letter then up to 11 letters or digits.
    public static func validateUserPrefix(_ p: String) throws {
        let ok = (1...12).contains(p.count) && p.first!.isASCII && p.first!.isLowercase
            && p.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) }
        if !ok { throw DesaError(.config, "user prefix \(Quote.show(p)) must be 1-12 characters: a lowercase letter, then lowercase letters or digits") }
    }

    /// Template names: lowercase letters, digits, `-` and `_`, starting with a letter.
    public static func validateTemplateName(_ t: String) throws {
        let ok = (1...40).contains(t.count) && t.first!.isLetter && t.first!.isASCII
            && t.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
        if !ok { throw DesaError.invalid("template name \(Quote.show(t)) must be lowercase letters, digits, '-' or '_', starting with a letter") }
    }

    /// A PHP version like `8.2` or `7.4`.
    public static func validatePHPVersion(_ v: String) throws {
        let parts = v.split(separator: ".", omittingEmptySubsequences: false)
        let ok = parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.count <= 2 && $0.allSatisfy { $0.isASCII && $0.isNumber } }
        if !ok { throw DesaError.invalid("PHP version \(Quote.show(v)) must look like 8.2") }
    }
}

/// Shows untrusted text inside error messages: quoted, control characters escaped, long text cut.
public enum Quote {
    public static func show(_ s: String, limit: Int = 60) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\0": out += "\\0"
            case "\"": out += "\\\""
            default:
                if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        if out.count > limit { out = String(out.prefix(limit)) + "…(\(s.count) chars)" }
        return "\"\(out)\""
    }
}
