import Crypto
import _CryptoExtras
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A light key for a local restic repository whose password desa made.
///
/// restic stretches a password with scrypt, calibrated at `init` to about half a second of
/// CPU, and every restic process pays it again when it opens the repository: measured here,
/// 0.68 s of a 1.05 s incremental backup of one village, so most of a nightly run. The
/// stretching protects a password a person could guess; desa's is 32 random bytes (256
/// bits), which no amount of stretching makes any harder or easier to guess. So `backup
/// init` adds a second key to the repository for the same password, its scrypt set to
/// N=1024, r=8, p=1 (milliseconds), and restic is told to try it first (`RESTIC_KEY_HINT`).
/// The calibrated key stays, so restic alone (without the hint) still opens the repository.
///
/// A restic key file (restic's design document, "Keys, Encryption and MAC"): JSON with the
/// scrypt parameters, a 64-byte salt and `data`, the repository's master key (JSON) sealed
/// with the user key: IV (16 bytes) || AES-256-CTR(plaintext) || Poly1305-AES MAC (16 bytes).
/// The user key is scrypt's 64 bytes: the AES-256 key, then the MAC's k (AES-128) and r.
/// A key file's name is the SHA-256 of its bytes.
public enum ResticKey {
    public static let lightN = 1024, lightR = 8, lightP = 1

    /// What restic keeps in `keys/`.
    struct File: Codable {
        var created: String
        var username: String
        var hostname: String
        var kdf: String
        var N: Int
        var r: Int
        var p: Int
        var salt: Data
        var data: Data
    }

    /// The local directory of a repository location, nil when it is remote (`sftp:`, `rest:`,
    /// `s3:`...), whose keys desa does not write.
    public static func localPath(_ repository: String) -> String? {
        if repository.hasPrefix("local:") { return String(repository.dropFirst("local:".count)) }
        let schemes = ["sftp", "rest", "s3", "b2", "azure", "gs", "swift", "rclone"]
        return schemes.contains { repository.hasPrefix($0 + ":") } ? nil : repository
    }

    /// Whether a password file holds what `backup init` makes: 64 hex digits (256 bits).
    public static func isGenerated(_ password: String) -> Bool {
        password.count == 64 && password.allSatisfy(\.isHexDigit)
    }

    /// The password as restic reads it from its file (surrounding whitespace removed).
    static func password(at path: String) throws -> String {
        guard let s = AtomicFiles.read(path) else {
            throw DesaError.system("cannot read the backup password file \(path)")
        }
        return s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The user key's three parts from scrypt.
    struct UserKey { var encryption: SymmetricKey; var macK: SymmetricKey; var macR: [UInt8] }

    static func derive(_ password: String, salt: Data, n: Int, r: Int, p: Int) throws -> UserKey {
        let k = try KDF.Scrypt.deriveKey(from: Array(password.utf8), salt: salt, outputByteCount: 64, rounds: n, blockSize: r, parallelism: p)
        let b = k.withUnsafeBytes { Array($0) }
        return UserKey(encryption: SymmetricKey(data: b[0..<32]), macK: SymmetricKey(data: b[32..<48]), macR: Array(b[48..<64]))
    }

    /// Poly1305-AES: Poly1305 keyed by r and AES-128_k(nonce).
    static func mac(_ ciphertext: [UInt8], nonce: [UInt8], _ key: UserKey) throws -> [UInt8] {
        // AES-CTR's first block of key stream is AES_k(nonce): one block of zeros gives it.
        let s = try AES._CTR.encrypt([UInt8](repeating: 0, count: 16), using: key.macK, nonce: .init(nonceBytes: nonce))
        return Poly1305.tag(key: key.macR + Array(s), message: ciphertext)
    }

    static func open(_ sealed: Data, _ key: UserKey) throws -> Data? {
        let b = Array(sealed)
        guard b.count >= 32 else { return nil }
        let iv = Array(b[0..<16]), ct = Array(b[16..<(b.count - 16)]), tag = Array(b[(b.count - 16)...])
        guard try mac(ct, nonce: iv, key) == tag else { return nil }
        return try AES._CTR.decrypt(ct, using: key.encryption, nonce: .init(nonceBytes: iv))
    }

    static func seal(_ plaintext: Data, _ key: UserKey) throws -> Data {
        var rng = SystemRandomNumberGenerator()
        let iv = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let ct = Array(try AES._CTR.encrypt(plaintext, using: key.encryption, nonce: .init(nonceBytes: iv)))
        return Data(iv + ct + (try mac(ct, nonce: iv, key)))
    }

    /// The ID of a light key of the repository at `dir` that `password` opens, adding one
    /// (sealing the master key the password's calibrated key holds) when there is none.
    /// Returns whether it was added.
    public static func ensureLight(repository dir: String, password: String, hostname: String, now: Date) throws -> (id: String, added: Bool) {
        let keys = dir + "/keys"
        let names = try FileManager.default.contentsOfDirectory(atPath: keys).filter { $0.count == 64 && $0.allSatisfy(\.isHexDigit) }
        var files: [(name: String, file: File)] = []
        for name in names {
            guard let data = FileManager.default.contents(atPath: keys + "/" + name),
                  let f = try? JSONDecoder().decode(File.self, from: data), f.kdf == "scrypt" else { continue }
            files.append((name, f))
        }
        // A light one already there (cheap to try), else the master key from a calibrated one.
        for (name, f) in files where f.N <= lightN && f.r <= lightR && f.p <= lightP {
            if try open(f.data, derive(password, salt: f.salt, n: f.N, r: f.r, p: f.p)) != nil { return (name, false) }
        }
        var master: Data?
        for (_, f) in files where master == nil {
            master = try open(f.data, derive(password, salt: f.salt, n: f.N, r: f.r, p: f.p))
        }
        guard let master else { throw DesaError.system("no key of the repository \(dir) opens with the backup password") }
        var rng = SystemRandomNumberGenerator()
        let salt = Data((0..<64).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let user = try derive(password, salt: salt, n: lightN, r: lightR, p: lightP)
        let file = File(created: Timestamp.format(now), username: "root", hostname: hostname, kdf: "scrypt",
                        N: lightN, r: lightR, p: lightP, salt: salt, data: try seal(master, user))
        let bytes = try JSONEncoder().encode(file)
        let id = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        // Written beside keys/ and renamed in, so restic never lists half a key.
        let tmp = dir + "/.desa-key.tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: bytes, attributes: [.posixPermissions: 0o400]) else {
            throw DesaError.system("cannot write \(tmp)")
        }
        guard rename(tmp, keys + "/" + id) == 0 else {
            unlink(tmp)
            throw DesaError.system("cannot add the light key to \(keys): \(String(cString: strerror(errno)))")
        }
        return (id, true)
    }
}

/// Poly1305 (RFC 8439 section 2.5), in 26-bit limbs; the tag of `message` under a 32-byte
/// one-time key (r, then s).
enum Poly1305 {
    static func tag(key: [UInt8], message: [UInt8]) -> [UInt8] {
        precondition(key.count == 32)
        func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
            UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
        }
        let m26: UInt32 = 0x3ff_ffff
        let r0 = UInt64(le32(key, 0) & 0x3ff_ffff), r1 = UInt64((le32(key, 3) >> 2) & 0x3ff_ff03)
        let r2 = UInt64((le32(key, 6) >> 4) & 0x3ff_c0ff), r3 = UInt64((le32(key, 9) >> 6) & 0x3f0_3fff)
        let r4 = UInt64((le32(key, 12) >> 8) & 0x00f_ffff)
        let s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5
        var h0: UInt32 = 0, h1: UInt32 = 0, h2: UInt32 = 0, h3: UInt32 = 0, h4: UInt32 = 0
        var i = 0
        while i < message.count {
            var block = Array(message[i..<min(i + 16, message.count)])
            var hibit: UInt32 = 1 << 24
            if block.count < 16 {
                block.append(1)
                block += [UInt8](repeating: 0, count: 16 - block.count)
                hibit = 0
            }
            h0 &+= le32(block, 0) & m26
            h1 &+= (le32(block, 3) >> 2) & m26
            h2 &+= (le32(block, 6) >> 4) & m26
            h3 &+= (le32(block, 9) >> 6) & m26
            h4 &+= (le32(block, 12) >> 8) | hibit
            let (a0, a1, a2, a3, a4) = (UInt64(h0), UInt64(h1), UInt64(h2), UInt64(h3), UInt64(h4))
            let d0 = a0 * r0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1
            var d1 = a0 * r1 + a1 * r0 + a2 * s4 + a3 * s3 + a4 * s2
            var d2 = a0 * r2 + a1 * r1 + a2 * r0 + a3 * s4 + a4 * s3
            var d3 = a0 * r3 + a1 * r2 + a2 * r1 + a3 * r0 + a4 * s4
            var d4 = a0 * r4 + a1 * r3 + a2 * r2 + a3 * r1 + a4 * r0
            var c = d0 >> 26; h0 = UInt32(d0 & 0x3ff_ffff)
            d1 += c; c = d1 >> 26; h1 = UInt32(d1 & 0x3ff_ffff)
            d2 += c; c = d2 >> 26; h2 = UInt32(d2 & 0x3ff_ffff)
            d3 += c; c = d3 >> 26; h3 = UInt32(d3 & 0x3ff_ffff)
            d4 += c; c = d4 >> 26; h4 = UInt32(d4 & 0x3ff_ffff)
            h0 &+= UInt32(c) &* 5; let c0 = h0 >> 26; h0 &= m26; h1 &+= c0
            i += 16
        }
        // Carry fully, then take h or h - p, whichever is below p.
        var c = h1 >> 26; h1 &= m26
        h2 &+= c; c = h2 >> 26; h2 &= m26
        h3 &+= c; c = h3 >> 26; h3 &= m26
        h4 &+= c; c = h4 >> 26; h4 &= m26
        h0 &+= c &* 5; c = h0 >> 26; h0 &= m26
        h1 &+= c
        var g0 = h0 &+ 5; c = g0 >> 26; g0 &= m26
        var g1 = h1 &+ c; c = g1 >> 26; g1 &= m26
        var g2 = h2 &+ c; c = g2 >> 26; g2 &= m26
        var g3 = h3 &+ c; c = g3 >> 26; g3 &= m26
        var g4 = h4 &+ c &- (1 << 26)
        var mask = (g4 >> 31) &- 1
        g0 &= mask; g1 &= mask; g2 &= mask; g3 &= mask; g4 &= mask
        mask = ~mask
        h0 = (h0 & mask) | g0; h1 = (h1 & mask) | g1; h2 = (h2 & mask) | g2; h3 = (h3 & mask) | g3; h4 = (h4 & mask) | g4
        let w0 = h0 | (h1 << 26), w1 = (h1 >> 6) | (h2 << 20), w2 = (h2 >> 12) | (h3 << 14), w3 = (h3 >> 18) | (h4 << 8)
        // Plus s, mod 2^128.
        var f = UInt64(w0) + UInt64(le32(key, 16)); let o0 = UInt32(truncatingIfNeeded: f)
        f = UInt64(w1) + UInt64(le32(key, 20)) + (f >> 32); let o1 = UInt32(truncatingIfNeeded: f)
        f = UInt64(w2) + UInt64(le32(key, 24)) + (f >> 32); let o2 = UInt32(truncatingIfNeeded: f)
        f = UInt64(w3) + UInt64(le32(key, 28)) + (f >> 32); let o3 = UInt32(truncatingIfNeeded: f)
        return [o0, o1, o2, o3].flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (8 * $0)) } }
    }
}
