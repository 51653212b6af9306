import Foundation

/// The Public Suffix List (https://publicsuffix.org/list/), read from Debian's
/// `publicsuffix` package, and the registered domain ("eTLD+1") of a name.
///
/// The algorithm is the list's own: every rule that matches the name's rightmost labels
/// is a candidate, an exception rule (`!www.ck`) prevails over all others and makes its
/// parent the public suffix, otherwise the rule with the most labels wins, and with none
/// the implicit rule `*` makes the top-level label the suffix. Wildcards (`*.ck`) match
/// exactly one label. Matching is case-insensitive.
///
/// Sections: by default both the ICANN and the PRIVATE sections are used. That is what
/// Let's Encrypt does for its rate limits: Boulder calls publicsuffix-go's
/// `publicsuffix.Domain`, whose default options do not ignore private rules
/// (`FindOptions{IgnorePrivate: false}`), and a name that is itself a public suffix is
/// its own rate-limit key (see `rateLimitKey(for:)`). Browsers also use both sections.
/// `.icannOnly` is there for callers that want registry boundaries only.
///
/// Names are expected in A-label form (`xn--85x722f.xn--55qx5d.cn`). The list writes its
/// internationalised rules in Unicode; they are converted to A-labels when loaded. A name
/// given in Unicode is lowercased, NFC-normalised and Punycode-encoded label by label
/// (not a full UTS #46 mapping), and answers come back in A-label form.
public struct PublicSuffixList: Sendable, Equatable {
    public enum Sections: String, Sendable, Equatable, Codable {
        /// ICANN and PRIVATE rules, as Let's Encrypt and browsers use them.
        case icannAndPrivate
        /// ICANN rules only.
        case icannOnly
    }

    /// Where Debian's `publicsuffix` package installs the list. The package also ships
    /// `public_suffix_list.dafsa` (a compiled form for libpsl) and the historical name
    /// `effective_tld_names.dat` (a symlink to this file); the `.dat` text is what is read.
    public static let debianPath = "/usr/share/publicsuffix/public_suffix_list.dat"

    private struct Rule: OptionSet, Sendable, Equatable {
        let rawValue: UInt8
        static let normal = Rule(rawValue: 1)
        static let wildcard = Rule(rawValue: 2)  // "*.key"
        static let exception = Rule(rawValue: 4)  // "!key"
    }

    private let rules: [String: Rule]
    public let sections: Sections
    /// How many rules were read (a `*.x` and an `x` rule count as two).
    public let ruleCount: Int

    /// Reads and parses the list at `path`. A missing or empty file is an error that says
    /// which package provides it.
    public static func load(path: String = debianPath, sections: Sections = .icannAndPrivate) throws -> PublicSuffixList {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DesaError(.notFound, "the Public Suffix List is missing: \(path) cannot be read; install Debian's publicsuffix package (apt-get install publicsuffix)")
        }
        let list = PublicSuffixList(parsing: String(decoding: data, as: UTF8.self), sections: sections)
        if list.ruleCount == 0 {
            throw DesaError(.config, "the Public Suffix List at \(path) has no rules; reinstall Debian's publicsuffix package")
        }
        return list
    }

    private static let systemList: Result<PublicSuffixList, DesaError> = {
        do { return .success(try load()) } catch let e as DesaError { return .failure(e) } catch {
            return .failure(DesaError(.system, "\(error)"))
        }
    }()

    /// The system list (both sections), read once per process and shared.
    public static func system() throws -> PublicSuffixList { try systemList.get() }

    /// Parses the text of a list in the publicsuffix.org format: one rule per line, read
    /// up to the first whitespace; `//` starts a comment; the PRIVATE section lies between
    /// `===BEGIN PRIVATE DOMAINS===` and `===END PRIVATE DOMAINS===`.
    public init(parsing text: String, sections: Sections = .icannAndPrivate) {
        var rules: [String: Rule] = [:]
        rules.reserveCapacity(12_000)
        var count = 0
        var inPrivate = false
        var text = text
        text.withUTF8 { bytes in
            var i = 0
            let n = bytes.count
            while i < n {
                var end = i
                while end < n && bytes[end] != 10 { end += 1 }
                var s = i
                while s < end && (bytes[s] == 32 || bytes[s] == 9 || bytes[s] == 13) { s += 1 }
                var e = s
                while e < end && bytes[e] != 32 && bytes[e] != 9 && bytes[e] != 13 { e += 1 }
                defer { i = end + 1 }
                if s == e { continue }
                if e - s >= 2 && bytes[s] == 47 && bytes[s + 1] == 47 {  // "//"
                    let line = String(decoding: UnsafeBufferPointer(rebasing: bytes[s..<end]), as: UTF8.self)
                    if line.contains("===BEGIN PRIVATE DOMAINS===") { inPrivate = true }
                    if line.contains("===END PRIVATE DOMAINS===") { inPrivate = false }
                    continue
                }
                if inPrivate && sections == .icannOnly { continue }
                var token = Substring(String(decoding: UnsafeBufferPointer(rebasing: bytes[s..<e]), as: UTF8.self))
                var kind = Rule.normal
                if token.hasPrefix("!") {
                    kind = .exception
                    token = token.dropFirst()
                } else if token.hasPrefix("*.") {
                    kind = .wildcard
                    token = token.dropFirst(2)
                }
                guard let key = PublicSuffixList.normalize(token) else { continue }
                rules[key, default: []].insert(kind)
                count += 1
            }
        }
        self.rules = rules
        self.sections = sections
        self.ruleCount = count
    }

    /// The name in the form rules are keyed by: A-labels, lowercase, no trailing dot.
    /// Nil for an empty name or one with an empty label (`.com`, `a..b`).
    static func normalize<S: StringProtocol>(_ name: S) -> String? {
        var name = Substring(name)
        if name.hasSuffix(".") { name = name.dropLast() }
        if name.isEmpty { return nil }
        if name.utf8.allSatisfy({ $0 < 0x80 }) {
            if name.utf8.first == 46 || name.utf8.last == 46 || name.contains("..") { return nil }
            return Punycode.asciiLowercased(name)
        }
        var labels: [String] = []
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, let a = Punycode.aLabel(label) else { return nil }
            labels.append(a)
        }
        return labels.joined(separator: ".")
    }

    /// The number of labels of the public suffix of `name` (a normalised name with
    /// `starts` the offsets where its labels begin).
    private func suffixLength(_ name: String, starts: [String.Index]) -> Int {
        let n = starts.count
        var longest = 1  // the implicit "*" rule
        for i in 0..<n {
            guard let rule = rules[String(name[starts[i]...])] else { continue }
            if rule.contains(.exception) { return n - i - 1 }  // the longest exception prevails
            if rule.contains(.normal) { longest = max(longest, n - i) }
            if rule.contains(.wildcard) && i >= 1 { longest = max(longest, n - i + 1) }
        }
        return longest
    }

    private func split(_ name: String) -> (String, [String.Index])? {
        guard let norm = PublicSuffixList.normalize(name) else { return nil }
        var starts = [norm.startIndex]
        var idx = norm.startIndex
        while let dot = norm[idx...].firstIndex(of: ".") {
            idx = norm.index(after: dot)
            starts.append(idx)
        }
        return (norm, starts)
    }

    /// The public suffix of `name` (`go.id` for `desa.bandungkab.go.id`), or nil for an
    /// empty or malformed name.
    public func publicSuffix(of name: String) -> String? {
        guard let (norm, starts) = split(name) else { return nil }
        let len = suffixLength(norm, starts: starts)
        return String(norm[starts[starts.count - len]...])
    }

    /// The registered domain of `name`: its public suffix plus one label
    /// (`bandungkab.go.id` for `x.y.bandungkab.go.id`). Nil when the name is itself a
    /// public suffix (`go.id`, `desa.id`, `com`) or is malformed.
    public func registeredDomain(of name: String) -> String? {
        guard let (norm, starts) = split(name) else { return nil }
        let len = suffixLength(norm, starts: starts)
        guard starts.count > len else { return nil }
        return String(norm[starts[starts.count - len - 1]...])
    }

    /// The key Let's Encrypt counts a name's certificates under: its registered domain,
    /// or the (normalised) name itself when it is a public suffix, as Boulder does
    /// (a suffix gets its own bucket rather than none). Nil only for a malformed name.
    public func rateLimitKey(for name: String) -> String? {
        guard let (norm, starts) = split(name) else { return nil }
        let len = suffixLength(norm, starts: starts)
        guard starts.count > len else { return norm }
        return String(norm[starts[starts.count - len - 1]...])
    }

    /// True when `name` is itself a public suffix (`go.id`, `desa.id`, `ck`, `test.ck`).
    public func isPublicSuffix(_ name: String) -> Bool {
        guard let (norm, starts) = split(name) else { return false }
        return suffixLength(norm, starts: starts) >= starts.count
    }
}
