import Foundation
import CSystemd
#if canImport(Glibc)
import Glibc
#endif

/// One file to put in place.
public struct FileWrite: Sendable, Equatable {
    public var path: String
    public var content: String
    public var mode: mode_t
    public var owner: uid_t?
    public var group: gid_t?

    public init(path: String, content: String, mode: mode_t = 0o644, owner: uid_t? = nil, group: gid_t? = nil) {
        self.path = path; self.content = content; self.mode = mode; self.owner = owner; self.group = group
    }
}

/// Writes files so that a reader sees the old content or the new one, never a mix:
/// each file goes to a temporary name in the same directory, the file system is synced
/// once for the whole batch (not once per file), then each is renamed into place and
/// the directories are synced.
public enum AtomicFiles {
    static let tempSuffix = ".desa-tmp"

    public static func write(_ files: [FileWrite]) throws {
        guard !files.isEmpty else { return }
        var temps: [(String, String)] = []
        do {
            for f in files {
                let dir = (f.path as NSString).deletingLastPathComponent
                let base = (f.path as NSString).lastPathComponent
                let temp = dir + "/." + base + tempSuffix
                try writeTemp(temp, f)
                temps.append((temp, f.path))
            }
            syncFileSystems(of: temps.map(\.0))
            for (temp, final) in temps {
                if rename(temp, final) != 0 { throw DesaError.system("cannot rename \(temp) to \(final): \(errnoText())") }
            }
        } catch {
            for (temp, _) in temps { unlink(temp) }
            throw error
        }
        for dir in Set(files.map { ($0.path as NSString).deletingLastPathComponent }) { fsyncPath(dir) }
    }

    public static func remove(_ paths: [String]) {
        for p in paths { unlink(p) }
        for dir in Set(paths.map { ($0 as NSString).deletingLastPathComponent }) { fsyncPath(dir) }
    }

    private static func writeTemp(_ temp: String, _ f: FileWrite) throws {
        unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, f.mode)
        guard fd >= 0 else { throw DesaError.system("cannot create \(temp): \(errnoText())") }
        defer { close(fd) }
        try writeAll(fd, Array(f.content.utf8), what: temp)
        if fchmod(fd, f.mode) != 0 { throw DesaError.system("cannot chmod \(temp): \(errnoText())") }
        if f.owner != nil || f.group != nil {
            if fchown(fd, f.owner ?? UInt32.max, f.group ?? UInt32.max) != 0 {
                throw DesaError.system("cannot chown \(temp): \(errnoText())")
            }
        }
    }

    /// Writes every byte, retrying short writes and EINTR; a full disk says so.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], what: String) throws {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                throw DesaError.system("cannot write \(what): \(String(cString: strerror(e)))\(e == ENOSPC ? " (the disk is full)" : "")")
            }
            written += n
        }
    }

    /// One `syncfs` per file system instead of one `fsync` per file.
    static func syncFileSystems(of paths: [String]) {
        var seen = Set<UInt64>()
        for p in paths {
            var st = stat()
            guard stat(p, &st) == 0, seen.insert(UInt64(st.st_dev)).inserted else { continue }
            let fd = open(p, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { _ = desa_syncfs(fd); close(fd) }
        }
    }

    static func fsyncPath(_ p: String) {
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    /// Reads a file as UTF-8, or nil if it cannot be opened. Reads to the end, so the
    /// files of /proc (which say their size is 0) come whole: Foundation's
    /// `contents(atPath:)` returned only the first 4 KiB of /proc/net/unix.
    public static func read(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A file's bytes, read whole (as `read`).
    public static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
