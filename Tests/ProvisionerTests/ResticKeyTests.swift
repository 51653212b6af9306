import Foundation
import Testing
@testable import Provisioner

@Suite("Backups: the light restic key")
struct ResticKeyTests {
    @Test("Poly1305 gives RFC 8439's tag (section 2.5.2) and the empty message's")
    func poly1305() {
        let key: [UInt8] = [0x85, 0xd6, 0xbe, 0x78, 0x57, 0x55, 0x6d, 0x33, 0x7f, 0x44, 0x52, 0xfe, 0x42, 0xd5, 0x06, 0xa8,
                            0x01, 0x03, 0x80, 0x8a, 0xfb, 0x0d, 0xb2, 0xfd, 0x4a, 0xbf, 0xf6, 0xaf, 0x41, 0x49, 0xf5, 0x1b]
        let tag = Poly1305.tag(key: key, message: Array("Cryptographic Forum Research Group".utf8))
        #expect(tag == [0xa8, 0x06, 0x1d, 0xc1, 0x30, 0x51, 0x36, 0xc6, 0xc2, 0x2b, 0x8b, 0xaf, 0x0c, 0x01, 0x27, 0xa9])
        // With no message the tag is s, the key's second half.
        #expect(Poly1305.tag(key: key, message: []) == Array(key[16...]))
    }

    func restic(_ repo: String, _ pw: String, hint: String?, _ args: String...) throws -> ProcessResult {
        var o = Spawn.Options()
        o.environment = Spawn.environment() + ["RESTIC_REPOSITORY=" + repo, "RESTIC_PASSWORD_FILE=" + pw, "RESTIC_CACHE_DIR=" + repo + ".cache"]
            + (hint.map { ["RESTIC_KEY_HINT=" + $0] } ?? [])
        return try SystemProcessRunner().capture(["/usr/bin/restic"] + args, o)
    }

    @Test("a light key added to a real restic repository is the one restic opens it with, once; a wrong password adds none")
    func lightKey() throws {
        let dir = "/var/tmp/desa-restickey-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repo = dir + "/repo", pw = dir + "/pw"
        let password = String(repeating: "0123456789abcdef", count: 4)
        #expect(ResticKey.isGenerated(password) && !ResticKey.isGenerated("correct horse battery staple"))
        try (password + "\n").write(toFile: pw, atomically: true, encoding: .utf8)
        try #require(try restic(repo, pw, hint: nil, "init").ok)
        let key = try ResticKey.ensureLight(repository: repo, password: password, hostname: "test", now: Date())
        #expect(key.added)
        let listed = try restic(repo, pw, hint: key.id, "key", "list", "--json")
        try #require(listed.ok, "\(listed.message)")
        let keys = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(keys.count == 2)
        #expect(keys.first { $0["current"] as? Bool == true }?["id"] as? String == String(key.id.prefix(8)),
                "restic opened the repository with its calibrated key, not the light one: \(keys)")
        #expect(try restic(repo, pw, hint: key.id, "check").ok)
        let again = try ResticKey.ensureLight(repository: repo, password: password, hostname: "test", now: Date())
        #expect(again.id == key.id && !again.added, "a second init adds no second light key")
        #expect(throws: DesaError.self) {
            _ = try ResticKey.ensureLight(repository: repo, password: String(repeating: "f", count: 64), hostname: "test", now: Date())
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: repo + "/keys").count == 2)
        #expect(ResticKey.localPath("local:/srv/b") == "/srv/b" && ResticKey.localPath("/srv/b") == "/srv/b")
        #expect(ResticKey.localPath("sftp:u@h:/b") == nil && ResticKey.localPath("rest:http://127.0.0.1:1/") == nil)
    }
}
