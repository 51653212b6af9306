import ArgumentParser
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

public struct BackupCommand: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Nightly backups with restic: each tenant's files, database and record as one snapshot (needs [backup] repository).",
        subcommands: [Init.self, Run.self, List.self, Snapshots.self, Restore.self, Verify.self, Forget.self]
    )

    public struct Init: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Create the repository and its password file (0600). A lost password means lost backups: keep a copy away from this server.")
        @OptionGroup var global: GlobalOptions
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: true)
                for line in try e.backupInit() { print(line) }
            }
        }
    }

    public struct Run: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Back up the named tenants, or all: one failing does not stop the others; exits 1 naming every tenant that failed.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Slugs or village codes.") var tenants: [String] = []
        @Flag(help: "Every active tenant.") var all = false
        @Flag(help: "Say which tenants would be backed up; run nothing.") var dryRun = false
        @Flag(help: "Print JSON.") var json = false
        public func validate() throws {
            if all == !tenants.isEmpty { throw ValidationError("name tenants or give --all") }
        }
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: json)
                try CLI.report(try e.backupRun(tenants, dryRun: dryRun), json: json)
            }
        }
    }

    public struct List: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Each tenant's last backup: its snapshot, when it last succeeded, the last outcome and error, its size.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Slug or village code (default: every tenant).") var tenant: String?
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: true)
                let rows = try e.backupList(tenant)
                if json { CLI.printJSON(.array(rows.map(\.json))); return }
                let now = e.time.now()
                print(Table.render(header: ["SLUG", "LAST GOOD", "AGE", "SNAPSHOT", "OUTCOME", "SIZE", "ADDED", "ERROR"], rows: rows.map { r in
                    [r.slug, r.record?.lastSuccessAt.map { Timestamp.format($0) } ?? "never",
                     r.record?.ageHours(now: now).map { String(format: "%.0f h", $0) } ?? "-", r.record?.lastSnapshot ?? "-",
                     r.record?.lastOutcome ?? "-", r.record.map { ByteSize.readable($0.sizeBytes) } ?? "-",
                     r.record.map { ByteSize.readable($0.bytesAdded) } ?? "-", r.record?.lastError ?? ""]
                }))
            }
        }
    }

    public struct Snapshots: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(abstract: "A tenant's snapshots in the repository (safety snapshots marked), oldest first.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Slug or village code.") var tenant: String
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: true)
                let snaps = try e.backupSnapshots(tenant)
                if json {
                    CLI.printJSON(.array(snaps.map { s in
                        .object([("id", .string(s.id)), ("short_id", .string(s.short_id)), ("time", .string(s.time)),
                                 ("safety", .bool((s.tags ?? []).contains("safety"))), ("tags", .array((s.tags ?? []).map { .string($0) }))])
                    }))
                    return
                }
                print(Table.render(header: ["ID", "TIME", "KIND"], rows: snaps.map { s in
                    [s.short_id, String(s.time.prefix(19)).replacingOccurrences(of: "T", with: " "), (s.tags ?? []).contains("safety") ? "safety (before a restore)" : "nightly or by hand"]
                }))
            }
        }
    }

    public struct Restore: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Restore a tenant's files and database from a snapshot (default: its latest).",
            discussion: """
            With --to DIR the snapshot goes under DIR (files/, database.sql, tenant.json) and nothing
            live changes. Without it the tenant is restored in place: a safety snapshot of what is there
            now is taken first, a snapshot larger than the tenant's quota is refused before anything
            changes, the files are copied in by the tenant's own user, and its database is replaced.
            """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Slug or village code (with --create, the village's code or slug in the repository).") var tenant: String
        @Option(help: "The snapshot's ID (desactl backup snapshots SLUG).") var snapshot: String?
        @Option(help: "Restore under this new or empty directory instead of in place.") var to: String?
        @Flag(help: "A village this server does not have (a new server): make it from its snapshot's record, then restore it.") var create = false
        @Flag(help: "Say what would be restored; change nothing.") var dryRun = false
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: json)
                try CLI.report(try e.backupRestore(tenant, snapshot: snapshot, to: to, dryRun: dryRun, create: create), json: json)
            }
        }
    }

    public struct Verify: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Read part of the repository back (restic check --read-data-subset), and restore a few tenants into scratch space and compare them.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Tenants to restore (default: backup.drill_tenants).") var tenants: Int?
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: json)
                try CLI.report(try e.perform(BackupVerify(tenants: tenants)), json: json)
            }
        }
    }

    public struct Forget: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Apply the retention (backup.keep_daily, keep_weekly, keep_monthly per tenant), then prune. Needs full credentials: an append-only repository refuses it.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Say what would be removed; remove nothing.") var dryRun = false
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: json)
                try CLI.report(try e.perform(BackupForget(dryRun: dryRun)), json: json)
            }
        }
    }
}

/// One row of `backup list`.
public struct BackupListRow: Sendable {
    public var slug: String
    public var code: String
    public var record: BackupRecord?
    public var json: JSON {
        .object([("slug", .string(slug)), ("code", .string(code)), ("last_snapshot", .str(record?.lastSnapshot)),
                 ("last_success_at", .str(record?.lastSuccessAt.map { Timestamp.format($0) })),
                 ("last_attempt_at", .str(record.map { Timestamp.format($0.lastAttemptAt) })),
                 ("last_outcome", .str(record?.lastOutcome)), ("last_error", .str(record?.lastError)),
                 ("size_bytes", record.map { .int(Int($0.sizeBytes)) } ?? .null), ("bytes_added", record.map { .int(Int($0.bytesAdded)) } ?? .null),
                 ("files", record.map { .int($0.files) } ?? .null)])
    }
}

extension Engine {
    /// Every tenant (or one) with its last backup.
    public func backupList(_ key: String?) throws -> [BackupListRow] {
        try Backups.require(config)
        return try store.queue.read { db in
            let records = try BackupRecord.byCode(db)
            let tenants = try key.map { [try StateStore.find(db, $0)] } ?? (try Tenant.order(Column("slug")).fetchAll(db).filter { $0.desired != .deleted })
            return tenants.map { BackupListRow(slug: $0.slug, code: $0.code, record: records[$0.code]) }
        }
    }

    public func backupSnapshots(_ key: String) throws -> [Restic.Snapshot] {
        try Backups.require(config)
        let t = try store.queue.read { db in try StateStore.find(db, key) }
        return try Restic(config).snapshots(tags: ["code:" + t.code]).sorted { $0.time < $1.time }
    }

    /// Makes the password file (0600, 32 random bytes as hex) unless it exists, and the
    /// repository unless it opens; what it did, for people.
    public func backupInit() throws -> [String] {
        guard config.backup.enabled else {
            throw DesaError(.config, "backups are off: set repository under [backup] in \(config.path) first")
        }
        var out: [String] = []
        let pw = config.backupPasswordFile
        if !FileManager.default.fileExists(atPath: pw) {
            var bytes = [UInt8](repeating: 0, count: 32)
            var rng = SystemRandomNumberGenerator()
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
            try FileManager.default.createDirectory(atPath: (pw as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try AtomicFiles.write([FileWrite(path: pw, content: bytes.map { String(format: "%02x", $0) }.joined() + "\n", mode: 0o600)])
            out.append("made the repository's password, \(pw) (0600)")
        }
        try Backups.ensureStaging(config)
        let restic = Restic(config)
        if restic.opens() {
            out.append("the repository \(config.backup.repository) exists and opens with that password: nothing to do")
        } else {
            let r = try restic.run(["init"])
            guard r.ok else { throw DesaError.system("restic init failed (exit \(r.status)): \(Restic.trim(r.message))") }
            out.append("made the repository \(config.backup.repository)")
            record(op: "backup init", target: config.backup.repository, outcome: "ok", detail: "repository made")
        }
        out.append(try lightKey())
        out.append("KEEP A COPY OF \(pw) AWAY FROM THIS SERVER: without it the backups cannot be read, by anyone.")
        return out
    }

    /// The light key (`ResticKey`) of a local repository with desa's own password, made once
    /// and its ID recorded for restic to try first; said plainly when there can be none.
    func lightKey() throws -> String {
        let hint = Restic.keyHintFile(config)
        guard let dir = ResticKey.localPath(config.backup.repository) else {
            try? FileManager.default.removeItem(atPath: hint)
            return "the repository is remote: every restic call derives its key with restic's own scrypt (about 0.5 s of CPU)"
        }
        let password = try ResticKey.password(at: config.backupPasswordFile)
        guard ResticKey.isGenerated(password) else {
            try? FileManager.default.removeItem(atPath: hint)
            return "the password in \(config.backupPasswordFile) is not one desa made (64 hex digits), so restic's key stretching stays on every call (about 0.5 s of CPU)"
        }
        let key = try ResticKey.ensureLight(repository: dir, password: password, hostname: ProcessInfo.processInfo.hostName, now: time.now())
        try AtomicFiles.write([FileWrite(path: hint, content: key.id + "\n", mode: 0o600)])
        if key.added { record(op: "backup init", target: config.backup.repository, outcome: "ok", detail: "light key \(key.id.prefix(8)) added") }
        return key.added
            ? "added a light key \(key.id.prefix(8)) for the same password (scrypt N=\(ResticKey.lightN); the password is 256 random bits, so stretching it adds nothing): restic calls open the repository in milliseconds"
            : "the light key \(key.id.prefix(8)) is there: restic calls open the repository in milliseconds"
    }
}
