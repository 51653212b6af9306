import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// restic, driven as a process with `--json`: the repository, its password file and the
/// cache are given by environment (never on the command line, where a `rest:` URL's
/// credentials would show in `ps`).
public struct Restic: Sendable {
    public var settings: BackupSettings
    public var passwordFile: String
    public var cacheDir: String
    /// The light key restic tries first (`ResticKey`), when `backup init` added one.
    public var keyHint: String?
    public var runner: SystemProcessRunner

    public init(_ config: Config) {
        settings = config.backup
        passwordFile = config.backupPasswordFile
        cacheDir = config.backupStagingDir + "/cache"
        keyHint = AtomicFiles.read(Self.keyHintFile(config))
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.flatMap { $0.isEmpty ? nil : $0 }
        runner = SystemProcessRunner()
    }

    /// Where `backup init` records the light key's ID.
    static func keyHintFile(_ c: Config) -> String { c.backupStagingDir + "/key-hint" }

    /// A snapshot as `restic snapshots --json` lists it.
    public struct Snapshot: Sendable, Equatable, Decodable {
        public var id: String
        public var short_id: String
        public var time: String
        public var paths: [String]
        public var tags: [String]?
        public var hostname: String?

        public var date: Date? { Timestamp.parseRFC3339(time) }
        public func tag(_ key: String) -> String? {
            tags?.first { $0.hasPrefix(key + ":") }.map { String($0.dropFirst(key.count + 1)) }
        }
    }

    /// What `restic backup --json` reports at its end.
    public struct Summary: Sendable, Decodable {
        public var snapshot_id: String?
        public var data_added: Int64
        public var total_files_processed: Int
        public var total_bytes_processed: Int64
        public var total_duration: Double
    }

    /// Runs restic with these arguments; its result (the caller judges the status).
    public func run(_ args: [String], stdin: String? = nil) throws -> ProcessResult {
        var o = Spawn.Options()
        o.environment = Spawn.environment() + [
            "RESTIC_REPOSITORY=" + settings.repository, "RESTIC_PASSWORD_FILE=" + passwordFile,
            "RESTIC_CACHE_DIR=" + cacheDir, "HOME=" + cacheDir, "RESTIC_PROGRESS_FPS=0.016",
        ] + (keyHint.map { ["RESTIC_KEY_HINT=" + $0] } ?? [])
        o.stdin = stdin
        return try runner.capture([settings.restic] + args, o)
    }

    /// Runs restic and fails with its message unless it exited 0.
    @discardableResult
    func must(_ args: [String], _ what: String) throws -> ProcessResult {
        let r = try run(args)
        guard r.ok else { throw DesaError.system("restic \(what) failed (exit \(r.status)): \(Self.trim(r.message))") }
        return r
    }

    /// A message short enough for an audit row and the journal.
    static func trim(_ s: String) -> String {
        let lines = s.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.hasPrefix("{") }
        let text = lines.suffix(3).joined(separator: "; ")
        return text.count > 400 ? String(text.prefix(400)) + "..." : text
    }

    /// Whether the repository exists and opens with the password.
    public func opens() -> Bool {
        (try? run(["cat", "config", "--no-lock"]))?.ok ?? false
    }

    public func snapshots(tags: [String] = ["desa"]) throws -> [Snapshot] {
        let r = try must(["snapshots", "--json", "--no-lock"] + tags.flatMap { ["--tag", $0] }, "snapshots")
        return try JSONDecoder().decode([Snapshot]?.self, from: Data(r.stdout.utf8)) ?? []
    }

    /// Backs up `paths` as one snapshot with these tags. Exit 3 (some files could not be
    /// read) leaves an incomplete snapshot behind: it is forgotten and the backup fails.
    /// The snapshot's time is `time`, the engine's clock (so retention can be tested).
    public func backup(_ paths: [String], tags: [String], excludes: [String], excludeLargerThan: Int64?, time: Date) throws -> Summary {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone.current
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        var args = ["backup", "--json", "--quiet", "--one-file-system", "--time", f.string(from: time)] + tags.flatMap { ["--tag", $0] }
        args += excludes.flatMap { ["--exclude", $0] }
        if let n = excludeLargerThan { args += ["--exclude-larger-than", "\(n)"] }
        let r = try run(args + ["--"] + paths)
        let summary = r.stdout.split(whereSeparator: \.isNewline).reversed().lazy
            .compactMap { try? JSONDecoder().decode(Summary.self, from: Data($0.utf8)) }.first
        if r.status == 3 {
            if let id = summary?.snapshot_id { _ = try? run(["forget", id]) }
            throw DesaError.system("restic could not read some of the files, so the snapshot was discarded: \(Self.trim(r.stderr))")
        }
        guard r.ok, let summary, summary.snapshot_id != nil else {
            throw DesaError.system("restic backup failed (exit \(r.status)): \(Self.trim(r.message))")
        }
        return summary
    }

    /// The size the snapshot takes restored (`restic stats --mode restore-size`).
    public func restoreSize(_ id: String) throws -> Int64 {
        struct Stats: Decodable { var total_size: Int64 }
        let r = try must(["stats", "--json", "--no-lock", "--mode", "restore-size", id], "stats")
        return try JSONDecoder().decode(Stats.self, from: Data(r.stdout.utf8)).total_size
    }

    /// Restores snapshot `id` under `target` (its paths appear there as absolute paths do).
    public func restore(_ id: String, to target: String) throws {
        try must(["restore", id, "--target", target], "restore of \(id)")
    }
}

extension Timestamp {
    /// restic's times: RFC 3339 with nanoseconds and a zone.
    static func parseRFC3339(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var t = s
        // ISO8601DateFormatter takes at most milliseconds.
        if let dot = t.firstIndex(of: "."), let end = t[dot...].firstIndex(where: { !$0.isNumber && $0 != "." }) {
            let frac = t[t.index(after: dot)..<end]
            t = String(t[..<dot]) + "." + String(frac.prefix(3)).padding(toLength: 3, withPad: "0", startingAt: 0) + String(t[end...])
        }
        return f.date(from: t) ?? ISO8601DateFormatter().date(from: s)
    }
}
