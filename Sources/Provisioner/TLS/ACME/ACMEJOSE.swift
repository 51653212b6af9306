import Crypto
import Foundation

/// base64url without padding (RFC 7515 §2).
enum Base64URL {
    static let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func encode<B: Sequence>(_ bytes: B) -> String where B.Element == UInt8 {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Decodes base64url, with or without padding; nil if it is not base64url.
    static func decode(_ text: String) -> [UInt8]? {
        var s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        while s.hasSuffix("=") { s.removeLast() }
        guard s.utf8.allSatisfy({ alphabet.contains($0) }) else { return nil }
        s = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        s += String(repeating: "=", count: (4 - s.utf8.count % 4) % 4)
        return Data(base64Encoded: s).map { [UInt8]($0) }
    }
}

/// The account key: ES256 (P-256) signer of every request. Unchecked: swift-crypto does not
/// mark the key Sendable on Linux, but it is immutable and BoringSSL signs with a shared
/// EC key from several threads safely.
struct ACMEAccountKey: @unchecked Sendable {
    let key: P256.Signing.PrivateKey

    /// The public key as a JWK, members in lexicographic order (RFC 7638's canonical form).
    var jwk: JSON {
        let point = Array(key.publicKey.x963Representation)   // 0x04 || X || Y
        return .object([("crv", .string("P-256")), ("kty", .string("EC")),
                        ("x", .string(Base64URL.encode(point[1..<33]))),
                        ("y", .string(Base64URL.encode(point[33..<65])))])
    }

    /// RFC 7638 thumbprint, base64url.
    var thumbprint: String { Base64URL.encode(SHA256.hash(data: jwk.bytes())) }

    func keyAuthorization(token: String) -> String { token + "." + thumbprint }

    /// Who signs: the key itself (newAccount) or the account URL.
    enum Signer: Sendable { case jwk, kid(String) }

    /// A flattened JWS (RFC 7515 §7.2.2); `payload` nil is POST-as-GET (empty payload).
    func jws(url: String, nonce: String, payload: [UInt8]?, signer: Signer) throws -> [UInt8] {
        var header: [(String, JSON)] = [("alg", .string("ES256"))]
        switch signer {
        case .jwk: header.append(("jwk", jwk))
        case .kid(let kid): header.append(("kid", .string(kid)))
        }
        header += [("nonce", .string(nonce)), ("url", .string(url))]
        let protected = Base64URL.encode(JSON.object(header).bytes())
        let body = payload.map { Base64URL.encode($0) } ?? ""
        let signature = try key.signature(for: Data((protected + "." + body).utf8))
        return JSON.object([("protected", .string(protected)), ("payload", .string(body)),
                            ("signature", .string(Base64URL.encode(signature.rawRepresentation)))]).bytes()
    }

    /// The `externalAccountBinding` member of a newAccount payload (RFC 8555 §7.3.4): an
    /// HS256 JWS over this key's JWK, keyed with the CA's MAC key.
    func externalAccountBinding(_ eab: ExternalAccountBinding, url: String) throws -> JSON {
        guard let macKey = Base64URL.decode(eab.hmacKey), !macKey.isEmpty else {
            throw DesaError.invalid("the external account binding's MAC key for \(Quote.show(eab.kid)) is not base64url")
        }
        let protected = Base64URL.encode(JSON.object([("alg", .string("HS256")), ("kid", .string(eab.kid)),
                                                      ("url", .string(url))]).bytes())
        let payload = Base64URL.encode(jwk.bytes())
        let mac = HMAC<SHA256>.authenticationCode(for: Data((protected + "." + payload).utf8), using: SymmetricKey(data: macKey))
        return .object([("protected", .string(protected)), ("payload", .string(payload)),
                        ("signature", .string(Base64URL.encode(mac)))])
    }

    /// Loads the key at `path`, or makes one and writes it there (PKCS#8 PEM, 0600).
    /// `existed` tells which.
    static func loadOrCreate(path: String) throws -> (key: ACMEAccountKey, existed: Bool) {
        if let pem = AtomicFiles.read(path) {
            do {
                return (ACMEAccountKey(key: try P256.Signing.PrivateKey(pemRepresentation: pem)), true)
            } catch {
                throw DesaError(.config, "the ACME account key \(path) is not a P-256 private key in PEM form")
            }
        }
        let key = P256.Signing.PrivateKey()
        try AtomicFiles.write([FileWrite(path: path, content: key.pemRepresentation, mode: 0o600)])
        return (ACMEAccountKey(key: key), false)
    }
}
