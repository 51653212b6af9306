import Foundation
import GRDB
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The journal's MESSAGE_IDs of backups (`systemd/desa.catalog` explains them).
public enum BackupMessageID {
    /// One tenant's backup failed (the run goes on).
    public static let failed = "4f1d6c2a9b7e4e0d8a3c5b1f0e9d2a67"
    /// The backup check's changes: stale (degraded), failed or too old (down), good again.
    public static let stale = "b8e2f4a61c3d4f9a8e7b2c0d5a1f3e94"
    public static let down = "e3a7c1d94b2f4e6a9d0c8b5f1a2e7c30"
    public static let ok = "2c9f5e1b7a3d4c8e9f0a6b4d1e3c5a72"
    /// A tenant restored in place.
    public static let restored = "9a4e2d7c1f6b4a3e8d5c0b9f2e1a7d46"
}

/// What `backup run` did, tenant by tenant.
public struct BackupRunReport: OperationReport {
    public struct Done: Sendable {
        public var slug: String
        public var snapshot: String
        public var bytesAdded: Int64
        public var sizeBytes: Int64
        public var seconds: Double
    }
    public var done: [Done] = []
    public var failed: [(slug: String, reason: String)] = []
    public var planned: [String] = []
    public var dryRun = false
    public var seconds: Double = 0

    public var summary: String {
        if dryRun { return "would back up \(planned.count) tenant\(planned.count == 1 ? "" : "s")" }
        let added = done.reduce(Int64(0)) { $0 + $1.bytesAdded }
        return "\(done.count) tenant\(done.count == 1 ? "" : "s") backed up (\(ByteSize.readable(added)) added) in \(String(format: "%.1f", seconds)) s"
            + (failed.isEmpty ? "" : "; \(failed.count) FAILED: " + failed.map(\.slug).joined(separator: ", "))
    }

    public var exitStatus: Int32 { failed.isEmpty ? ExitStatus.ok : ExitStatus.failed }

    public var json: JSON {
        .object([
            ("dry_run", .bool(dryRun)), ("planned", .array(planned.map { .string($0) })),
            ("done", .array(done.map { d in
                .object([("slug", .string(d.slug)), ("snapshot", .string(d.snapshot)), ("bytes_added", .int(Int(d.bytesAdded))),
                         ("size_bytes", .int(Int(d.sizeBytes))), ("seconds", .double(d.seconds))])
            })),
            ("failed", .array(failed.map { .object([("slug", .string($0.slug)), ("reason", .string($0.reason))]) })),
            ("seconds", .double(seconds)), ("summary", .string(summary)),
        ])
    }

    public var lines: [String] {
        if dryRun { return planned.map { "would back up \($0)" } + [summary] }
        return done.map { "ok \($0.slug): snapshot \($0.snapshot), \(ByteSize.readable($0.sizeBytes)) read, \(ByteSize.readable($0.bytesAdded)) added" }
            + failed.map { "FAILED \($0.slug): \($0.reason)" } + [summary]
    }
}

/// `backup run`: each tenant as one restic snapshot (its home, its database's dump, its
/// record), tagged `desa`, `code:CODE` and `slug:SLUG`. Tenants run `backup.parallel` at a
/// time; one that fails is recorded with its reason and journaled, and the run goes on.
/// Two runs never overlap (the run lock); the state lock is not held, so onboarding goes on.
public struct BackupRun: Operation {
    public var keys: [String]
    public var dryRun: Bool
    let stateDir: String

    public init(engine: Engine, keys: [String], dryRun: Bool) {
        self.keys = keys; self.dryRun = dryRun; stateDir = engine.config.stateDir
    }

    public var name: String { "backup run" }
    public var target: String { keys.isEmpty ? "all" : keys.joined(separator: " ") }
    public var lock: OperationLock { .none }

    public func run(_ context: OperationContext) throws -> BackupRunReport {
        let e = context.engine
        try Backups.require(e.config)
        let tenants = try Backups.tenants(e, keys)
        var report = BackupRunReport(dryRun: dryRun)
        report.planned = tenants.map(\.slug)
        if dryRun { return report }
        let held = try Backups.runLock(e.config)
        defer { withExtendedLifetime(held) {} }
        let started = e.time.now()
        let done = Mutex<[BackupRunReport.Done]>([]), failed = Mutex<[(slug: String, reason: String)]>([])
        e.progress.begin("backing up", total: tenants.count)
        // The first tenant goes alone: the code every village shares is then in the
        // repository's index before the others start (two restic processes at once would
        // each store what neither had yet: 2x the shared tree on a first night, measured).
        let first = Array(tenants.prefix(1)), rest = Array(tenants.dropFirst())
        for (batch, width) in [(first, 1), (rest, e.config.backup.parallel)] {
            Backups.parallel(batch, width: width) { t in
                let t0 = e.time.now()
                do {
                    let d = try Backups.backUp(t, e, tags: [])
                    done.withLock { $0.append(.init(slug: t.slug, snapshot: d.snapshot, bytesAdded: d.summary.data_added,
                                                    sizeBytes: d.summary.total_bytes_processed, seconds: e.time.now().timeIntervalSince(t0))) }
                    context.note("backup of \(t.slug) (\(t.code)): snapshot \(d.snapshot), \(ByteSize.readable(d.summary.data_added)) added",
                                 tenant: t, fields: ["DESA_BACKUP_SNAPSHOT": d.snapshot, "DESA_BACKUP_BYTES_ADDED": "\(d.summary.data_added)"])
                } catch {
                    let why = Applier.message(error)
                    failed.withLock { $0.append((t.slug, why)) }
                    Backups.saveFailure(t, why, e)
                    context.note("backup of \(t.slug) (\(t.code)) FAILED: \(why)", tenant: t, priority: .err,
                                 fields: ["MESSAGE_ID": BackupMessageID.failed])
                }
                e.progress.advance(1)
            }
        }
        e.progress.end()
        report.done = done.withLock { $0 }.sorted { $0.slug < $1.slug }
        report.failed = failed.withLock { $0 }.sorted { $0.slug < $1.slug }
        report.seconds = e.time.now().timeIntervalSince(started)
        return report
    }
}

/// What backups share: the checks before any work, the tenants asked for, the per-tenant
/// backup, the workers.
public enum Backups {
    /// Backups on, and the repository made (`backup init`).
    static func require(_ c: Config) throws {
        guard c.backup.enabled else {
            throw DesaError(.config, "backups are off: set repository under [backup] in \(c.path), then run desactl backup init")
        }
        guard FileManager.default.fileExists(atPath: c.backupPasswordFile) else {
            throw DesaError(.config, "the backup repository's password file \(c.backupPasswordFile) does not exist: run desactl backup init")
        }
    }

    /// The tenants named (slug or code), or every active one.
    static func tenants(_ e: Engine, _ keys: [String]) throws -> [Tenant] {
        try e.store.queue.read { db in
            if keys.isEmpty {
                return try Tenant.order(Column("code")).fetchAll(db).filter { $0.desired != .deleted && $0.status == .active }
            }
            var seen = Set<String>()
            return try keys.map { try StateStore.find(db, $0) }.filter { seen.insert($0.code).inserted }
        }
    }

    /// The run lock: two runs never overlap, the second says so at once.
    static func runLock(_ c: Config) throws -> StateLock {
        let path = c.backupStagingDir + "/run.lock"
        try ensureStaging(c)
        do { return try StateLock(path: path, timeout: 0) } catch let err as DesaError where err.kind == .conflict {
            throw DesaError(.conflict, "another backup run is going (lock \(path)); two runs never overlap: this one did nothing")
        }
    }

    /// One tenant's lock: a restore and a backup of the same tenant never overlap.
    static func tenantLock(_ c: Config, _ t: Tenant, timeout: TimeInterval) throws -> StateLock {
        try StateLock(path: c.backupStagingDir + "/\(t.code.filter(\.isNumber)).lock", timeout: timeout)
    }

    /// The staging directory: root's, others may only pass through it (0711) to the restore
    /// work directory a tenant is given; restic's cache and the staged dumps are root's alone.
    static func ensureStaging(_ c: Config) throws {
        for (d, mode) in [(c.backupStagingDir, mode_t(0o711)), (c.backupStagingDir + "/cache", 0o700), (c.backupStagingDir + "/tenants", 0o700), (c.backupStagingDir + "/restore", 0o711)] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            var st = stat()
            guard lstat(d, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == 0 else {
                throw DesaError.system("\(d) must be a directory owned by root")
            }
            chmod(d, mode)
        }
    }

    /// Runs `work` for each tenant, `width` at a time.
    static func parallel(_ tenants: [Tenant], width: Int, _ work: @escaping @Sendable (Tenant) -> Void) {
        let next = Atomic<Int>(0)
        let group = DispatchGroup()
        for _ in 0..<max(1, min(width, tenants.count)) {
            DispatchQueue.global().async(group: group) {
                while true {
                    let i = next.add(1, ordering: .relaxed).oldValue
                    guard i < tenants.count else { return }
                    work(tenants[i])
                }
            }
        }
        group.wait()
    }

    /// The staged part of a tenant's snapshot: its record and its dump.
    static func stageDir(_ c: Config, _ t: Tenant) -> String { c.backupStagingDir + "/tenants/" + t.code.filter(\.isNumber) }

    /// What of a home is never backed up: temporary files and sessions, and the image's lost+found.
    static func excludes(home: String) -> [String] { [home + "/tmp/*", home + "/sessions/*", home + "/lost+found"] }

    /// Backs one tenant up as one snapshot (with `tags` added: `safety` before a restore);
    /// records it unless it is a safety snapshot. Its dump failing fails it, before restic runs.
    static func backUp(_ t: Tenant, _ e: Engine, tags extra: [String]) throws -> (snapshot: String, summary: Restic.Summary) {
        let c = e.config
        let held = try tenantLock(c, t, timeout: 600)
        defer { withExtendedLifetime(held) {} }
        let home = t.home(c)
        var st = stat()
        guard lstat(home, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { throw DesaError.system("its home \(home) is missing") }
        if c.quota.backend == .image {
            var parent = stat()
            guard stat((home as NSString).deletingLastPathComponent, &parent) == 0, parent.st_dev != st.st_dev else {
                throw DesaError.system("its home \(home) is not mounted (its image is not there): backing up the empty directory under it would look like a good backup")
            }
        }
        let (db, quota, aliases) = try e.store.queue.read { db in
            (try TenantDatabase.fetchOne(db, key: t.code), try TenantQuota.fetchOne(db, key: t.code),
             try Alias.filter(Column("code") == t.code).fetchAll(db).map(\.domain).sorted())
        }
        try ensureStaging(c)
        let stage = stageDir(c, t)
        try? FileManager.default.removeItem(atPath: stage)
        try FileManager.default.createDirectory(atPath: stage, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: stage) }
        let database = (c.mariadb.enabled && db?.desired == .present) ? db?.name : nil
        if let name = database {
            try MariaDBDump.dump(name, to: stage + "/database.sql", settings: c.mariadb, runner: e.runner, gzip: false)
        }
        let quotaBytes = c.quota.backend == .none ? nil : (quota?.bytes ?? c.quota.default.bytes)
        let record = TenantBackupRecord(code: t.code, slug: t.slug, name: t.name, kind: t.kind.rawValue, districtCode: t.districtCode,
                                        districtName: t.districtName, aliases: aliases, template: t.template, php: t.php, uid: t.uid,
                                        home: home, quotaBytes: quotaBytes, database: database, takenAt: Timestamp.format(e.time.now()))
        try AtomicFiles.write([FileWrite(path: stage + "/tenant.json", content: try record.encoded(), mode: 0o600)])
        // A file larger than the quota can only be sparse: restic would read it whole.
        let limit = quotaBytes.map { $0 + 1 }
        let summary = try Restic(c).backup([home, stage], tags: ["desa", "code:" + t.code, "slug:" + t.slug] + extra,
                                           excludes: excludes(home: home), excludeLargerThan: limit, time: e.time.now())
        let id = summary.snapshot_id ?? ""
        if extra.isEmpty {
            let now = e.time.now()
            let r = BackupRecord(code: t.code, lastAttemptAt: now, lastOutcome: "ok", lastError: nil, lastSnapshot: id, lastSuccessAt: now,
                                 bytesAdded: summary.data_added, sizeBytes: summary.total_bytes_processed, files: summary.total_files_processed)
            try e.store.queue.write { db in try r.save(db) }
        }
        return (id, summary)
    }

    /// A failed attempt: recorded, keeping the last good snapshot.
    static func saveFailure(_ t: Tenant, _ why: String, _ e: Engine) {
        try? e.store.queue.write { db in
            var r = try BackupRecord.fetchOne(db, key: t.code)
                ?? BackupRecord(code: t.code, lastAttemptAt: e.time.now(), lastOutcome: "failed", bytesAdded: 0, sizeBytes: 0, files: 0)
            r.lastAttemptAt = e.time.now(); r.lastOutcome = "failed"; r.lastError = why
            try r.save(db)
        }
    }
}

extension Engine {
    public func backupRun(_ keys: [String], dryRun: Bool) throws -> BackupRunReport {
        try perform(BackupRun(engine: self, keys: keys, dryRun: dryRun))
    }
}
