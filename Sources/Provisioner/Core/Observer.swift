import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a plan needs to know of a config file on the server: the SHA-256 of its bytes and
/// the tenant its desa header names (nil: not desa's). A plan compares digests, so the
/// files of 5,000 tenants need not all be held in memory at once.
public struct SeenFile: Sendable, Equatable {
    public var digest: Digest
    public var owner: String?

    public init(digest: Digest, owner: String?) { self.digest = digest; self.owner = owner }

    public init<B: Sequence>(bytes: B) where B.Element == UInt8 {
        let all = Array(bytes)
        digest = Digest(of: all)
        let first = all.prefix { $0 != 10 }
        owner = Renderer.managedTenant(ofFileContent: String(decoding: first, as: UTF8.self)[...])
    }

    public init(_ content: String) { self.init(bytes: content.utf8) }

    /// Whether the file holds exactly `content`.
    public func holds(_ content: String) -> Bool { Digest(of: Array(content.utf8)) == digest }
}

/// A SHA-256 digest as four words: hashable, sendable, 32 bytes inline.
public struct Digest: Hashable, Sendable {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64

    public init(of bytes: [UInt8]) { self.init(SHA256.hash(data: bytes)) }

    init(_ h: SHA256Digest) {
        var w: [UInt64] = [0, 0, 0, 0]
        h.withUnsafeBytes { raw in w.withUnsafeMutableBytes { $0.copyMemory(from: raw) } }
        a = w[0]; b = w[1]; c = w[2]; d = w[3]
    }
}

public struct FileStat: Sendable, Equatable {
    public var uid: Int
    public var gid: Int
    public var mode: Int
    public var isDirectory: Bool
}

/// Reads what is on the server now. The real one reads the file system and the
/// passwd file; tests may point it at a sandbox.
public protocol Observing {
    func users(prefix: String) throws -> [String: SystemUser]
    /// Every `*.conf` file in the given directories, by path, with its content.
    func configFiles(in dirs: [String]) -> [String: String]
    /// The same files, each as its digest and owner.
    func seenFiles(in dirs: [String]) -> [String: SeenFile]
    func stat(_ path: String) -> FileStat?
    /// How many processes run with each of these UIDs (only UIDs with any are returned).
    func processCounts(uids: Set<Int>) -> [Int: Int]
    /// A file's content, or nil when there is none.
    func read(_ path: String) -> String?
}

extension Observing {
    public func seenFiles(in dirs: [String]) -> [String: SeenFile] { configFiles(in: dirs).mapValues { SeenFile($0) } }
    public func isDirectory(_ path: String) -> Bool { stat(path)?.isDirectory ?? false }

    /// The stat of each path that exists.
    public func stats(_ paths: [String]) -> [String: FileStat] {
        var out: [String: FileStat] = [:]
        for p in paths { if let st = stat(p) { out[p] = st } }
        return out
    }
}

public struct SystemObserver: Observing {
    let usersDB: Users
    /// The passwd file is read once per observer (one plan), however many capabilities ask.
    private let cache = UsersCache()
    public init(users: Users) { usersDB = users }

    public func users(prefix: String) throws -> [String: SystemUser] {
        try cache.get(prefix) {
            Dictionary(try usersDB.tenants(prefix: prefix).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        }
    }

    public func configFiles(in dirs: [String]) -> [String: String] {
        eachConfigFile(in: dirs) { AtomicFiles.read($0) }
    }

    /// One file at a time: read, digested, let go.
    public func seenFiles(in dirs: [String]) -> [String: SeenFile] {
        eachConfigFile(in: dirs) { AtomicFiles.readBytes($0).map { SeenFile(bytes: $0) } }
    }

    /// `look` of every `*.conf` file (not hidden) in `dirs`, by path; files it gives nil for are left out.
    private func eachConfigFile<T>(in dirs: [String], _ look: (String) -> T?) -> [String: T] {
        var out: [String: T] = [:]
        for d in dirs {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: d) else { continue }
            out.reserveCapacity(out.count + names.count)
            for n in names where n.hasSuffix(".conf") && !n.hasPrefix(".") {
                let p = d + "/" + n
                if let v = look(p) { out[p] = v }
            }
        }
        return out
    }

    public func stat(_ path: String) -> FileStat? {
        var st = Glibc.stat()
        guard lstat(path, &st) == 0 else { return nil }
        return FileStat(uid: Int(st.st_uid), gid: Int(st.st_gid), mode: Int(st.st_mode & 0o7777),
                        isDirectory: (st.st_mode & S_IFMT) == S_IFDIR)
    }

    public func read(_ path: String) -> String? { AtomicFiles.read(path) }

    public func processCounts(uids: Set<Int>) -> [Int: Int] {
        uids.isEmpty ? [:] : Processes.counts(uids: uids)
    }
}

final class UsersCache: @unchecked Sendable {
    private let lock = NSLock()
    private var byPrefix: [String: [String: SystemUser]] = [:]
    func get(_ prefix: String, _ load: () throws -> [String: SystemUser]) throws -> [String: SystemUser] {
        if let hit = lock.withLock({ byPrefix[prefix] }) { return hit }
        let v = try load()
        lock.withLock { byPrefix[prefix] = v }
        return v
    }
}
