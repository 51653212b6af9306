import Foundation

/// Remembers the previous content of every config file a batch is about to change, on
/// disk, before the first write. If the process dies mid-batch, the next run restores
/// those files (which passed `nginx -t` when they were written) and plans again.
public struct RollbackJournal {
    public struct Entry: Codable, Sendable { public var path: String; public var old: String? }
    let dir: String
    var manifest: String { dir + "/manifest.json" }

    public init(dir: String) { self.dir = dir }

    public func begin(paths: [String]) throws -> [Entry] {
        let entries = paths.map { Entry(path: $0, old: AtomicFiles.read($0)) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let data = try JSONEncoder().encode(entries)
        try AtomicFiles.write([FileWrite(path: manifest, content: String(decoding: data, as: UTF8.self), mode: 0o600)])
        return entries
    }

    public func pending() -> [Entry]? {
        guard let d = FileManager.default.contents(atPath: manifest) else { return nil }
        return try? JSONDecoder().decode([Entry].self, from: d)
    }

    public func restore(_ entries: [Entry]) {
        let writes = entries.compactMap { e in e.old.map { FileWrite(path: e.path, content: $0, mode: 0o644) } }
        try? AtomicFiles.write(writes)
        AtomicFiles.remove(entries.filter { $0.old == nil }.map(\.path))
    }

    public func clear() { unlink(manifest) }

    /// Undoes an interrupted batch. Returns how many files were put back.
    @discardableResult
    public func recover() -> Int {
        guard let entries = pending() else { return 0 }
        restore(entries)
        clear()
        return entries.count
    }
}
