import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The HMAC algorithms of RFC 8945 that desa signs with (HMAC-MD5 is refused: obsolete).
public enum TSIGAlgorithm: String, Sendable, CaseIterable {
    case hmacSHA1 = "hmac-sha1"
    case hmacSHA256 = "hmac-sha256"
    case hmacSHA384 = "hmac-sha384"
    case hmacSHA512 = "hmac-sha512"

    /// The algorithm's name as it goes on the wire (RFC 8945 §6).
    var wireName: String { rawValue }

    var macLength: Int {
        switch self {
        case .hmacSHA1: 20
        case .hmacSHA256: 32
        case .hmacSHA384: 48
        case .hmacSHA512: 64
        }
    }

    func mac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        let k = SymmetricKey(data: key)
        switch self {
        case .hmacSHA1: return Array(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: k))
        case .hmacSHA256: return Array(HMAC<SHA256>.authenticationCode(for: data, using: k))
        case .hmacSHA384: return Array(HMAC<SHA384>.authenticationCode(for: data, using: k))
        case .hmacSHA512: return Array(HMAC<SHA512>.authenticationCode(for: data, using: k))
        }
    }
}

/// A TSIG key (RFC 8945): the name the server knows it by, its algorithm and its secret.
public struct TSIGKey: Sendable, CustomStringConvertible {
    /// Canonical: lower-case, no trailing dot.
    public let name: String
    public let algorithm: TSIGAlgorithm
    public let secret: [UInt8]

    public init(name: String, algorithm: TSIGAlgorithm = .hmacSHA256, secret: [UInt8]) throws {
        self.name = try DNSName.validate(name, what: "the TSIG key name")
        guard !secret.isEmpty else { throw DesaError(.config, "the TSIG key \(self.name) has an empty secret") }
        self.algorithm = algorithm
        self.secret = secret
    }

    /// Never prints the secret.
    public var description: String { "TSIG key \(name) (\(algorithm.rawValue))" }

    /// Reads a BIND key file as `tsig-keygen -a hmac-sha256 NAME` writes it:
    /// `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`. A file that group or
    /// others may read (or write) is refused. With several keys in the file, `name` picks one.
    public static func load(path: String, name: String? = nil) throws -> TSIGKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw DesaError(.config, "cannot read the TSIG key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw DesaError(.config, "cannot stat the TSIG key file \(path): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else { throw DesaError(.config, "the TSIG key file \(path) is not a regular file") }
        if st.st_mode & 0o077 != 0 {
            throw DesaError(.config, "key file \(path) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 \(path)")
        }
        guard st.st_size <= 65536 else { throw DesaError(.config, "the TSIG key file \(path) is larger than 64 KiB; is it a key file?") }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw DesaError(.config, "cannot read the TSIG key file \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            data.append(contentsOf: buf[0..<n])
            guard data.count <= 65536 else { throw DesaError(.config, "the TSIG key file \(path) is larger than 64 KiB") }
        }
        return try parse(String(decoding: data, as: UTF8.self), source: path, name: name)
    }

    /// Parses the text of a BIND key file; `source` names it in errors.
    public static func parse(_ text: String, source: String, name wanted: String? = nil) throws -> TSIGKey {
        let tokens = try BINDTokens.split(text, source: source)
        var i = 0
        func fail(_ why: String) -> DesaError { DesaError(.config, "\(source) is not a BIND key file: \(why)") }
        func next(_ what: String) throws -> BINDTokens.Token {
            guard i < tokens.count else { throw fail("it ends where \(what) was expected") }
            defer { i += 1 }
            return tokens[i]
        }
        func expect(_ punct: String) throws {
            let t = try next("'\(punct)'")
            guard t == .punct(punct) else { throw fail("expected '\(punct)' but found \(t)") }
        }
        var keys: [(String, String?, String?)] = []
        while i < tokens.count {
            guard case .word("key") = try next("'key'") else { throw fail("expected a 'key' statement, found \(tokens[i - 1])") }
            let keyName: String
            switch try next("the key name") {
            case .word(let w), .string(let w): keyName = w
            case let t: throw fail("expected the key name, found \(t)")
            }
            try expect("{")
            var algorithm: String?, secret: String?
            while true {
                let t = try next("'}'")
                if t == .punct("}") { break }
                guard case .word(let option) = t else { throw fail("expected an option of key \(keyName), found \(t)") }
                let value: String
                switch try next("the value of '\(option)'") {
                case .word(let w), .string(let w): value = w
                case let t: throw fail("expected the value of '\(option)', found \(t)")
                }
                try expect(";")
                switch option.lowercased() {
                case "algorithm": algorithm = value
                case "secret": secret = value
                default: throw fail("key \(keyName) has an unknown option '\(option)'")
                }
            }
            try expect(";")
            keys.append((keyName, algorithm, secret))
        }
        let chosen: (String, String?, String?)
        if let wanted {
            let w = try DNSName.validate(wanted, what: "the TSIG key name")
            guard let k = keys.first(where: { (try? DNSName.validate($0.0)) == w }) else {
                throw DesaError(.config, "\(source) has no key named \(w) (it has: \(keys.map(\.0).joined(separator: ", ")))")
            }
            chosen = k
        } else {
            guard keys.count == 1 else {
                throw DesaError(.config, keys.isEmpty ? "\(source) holds no key" : "\(source) holds \(keys.count) keys; name the one to use")
            }
            chosen = keys[0]
        }
        let (keyName, algorithmText, secretText) = chosen
        guard let algorithmText else { throw fail("key \(keyName) has no algorithm") }
        guard let algorithm = TSIGAlgorithm(rawValue: algorithmText.lowercased().replacingOccurrences(of: ".", with: "")) else {
            throw DesaError(.config, "the TSIG key \(keyName) in \(source) uses the algorithm \(Quote.show(algorithmText)); desa signs with \(TSIGAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let secretText, let secret = Data(base64Encoded: secretText) else {
            throw fail("key \(keyName) has no secret or its secret is not base64")
        }
        return try TSIGKey(name: keyName, algorithm: algorithm, secret: Array(secret))
    }
}

/// Tokens of BIND's configuration syntax, enough for key files: words, quoted strings,
/// `{ } ;`, and `#`, `//` and `/* */` comments.
enum BINDTokens {
    enum Token: Equatable, CustomStringConvertible {
        case word(String), string(String), punct(String)
        var description: String {
            switch self {
            case .word(let w): "'\(w)'"
            case .string: "a quoted string"
            case .punct(let p): "'\(p)'"
            }
        }
    }

    static func split(_ text: String, source: String) throws -> [Token] {
        let b = Array(text.utf8)
        var out: [Token] = []
        var i = 0
        func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 10 || c == 13 }
        while i < b.count {
            let c = b[i]
            if isSpace(c) { i += 1; continue }
            if c == UInt8(ascii: "#") || (c == UInt8(ascii: "/") && i + 1 < b.count && b[i + 1] == UInt8(ascii: "/")) {
                while i < b.count && b[i] != 10 { i += 1 }
                continue
            }
            if c == UInt8(ascii: "/") && i + 1 < b.count && b[i + 1] == UInt8(ascii: "*") {
                i += 2
                while i + 1 < b.count && !(b[i] == UInt8(ascii: "*") && b[i + 1] == UInt8(ascii: "/")) { i += 1 }
                guard i + 1 < b.count else { throw DesaError(.config, "\(source): a /* comment is not closed") }
                i += 2
                continue
            }
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "}") || c == UInt8(ascii: ";") {
                out.append(.punct(String(UnicodeScalar(c)))); i += 1; continue
            }
            if c == UInt8(ascii: "\"") {
                var s: [UInt8] = []
                i += 1
                while i < b.count && b[i] != UInt8(ascii: "\"") {
                    if b[i] == UInt8(ascii: "\\") && i + 1 < b.count { i += 1 }
                    s.append(b[i]); i += 1
                }
                guard i < b.count else { throw DesaError(.config, "\(source): a quoted string is not closed") }
                i += 1
                out.append(.string(String(decoding: s, as: UTF8.self)))
                continue
            }
            var w: [UInt8] = []
            while i < b.count && !isSpace(b[i]) && ![UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: ";"), UInt8(ascii: "\"")].contains(b[i]) {
                w.append(b[i]); i += 1
            }
            out.append(.word(String(decoding: w, as: UTF8.self)))
        }
        return out
    }
}
