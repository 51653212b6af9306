import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// What `backup restore` did.
public struct BackupRestoreReport: OperationReport {
    public var slug: String
    public var snapshot: String
    public var takenAt: String
    /// `--to DIR`; nil: in place.
    public var to: String?
    /// The snapshot of what was there before an in-place restore.
    public var safety: String?
    public var sizeBytes: Int64
    public var database: String?
    public var dryRun = false
    public var seconds: Double = 0

    public var summary: String {
        let what = "snapshot \(snapshot) of \(slug) (taken \(takenAt), \(ByteSize.readable(sizeBytes)))"
        if dryRun { return "would restore \(what) " + (to.map { "into \($0)" } ?? "in place, after a safety snapshot") }
        if let to { return "restored \(what) into \(to): nothing live changed" }
        return "restored \(what) in place" + (database.map { ", its files and its database \($0)" } ?? ", its files")
            + "; what was there before is snapshot \(safety ?? "?")"
    }

    public var exitStatus: Int32 { ExitStatus.ok }

    public var json: JSON {
        .object([("slug", .string(slug)), ("snapshot", .string(snapshot)), ("taken_at", .string(takenAt)), ("to", .str(to)),
                 ("safety_snapshot", .str(safety)), ("size_bytes", .int(Int(sizeBytes))), ("database", .str(database)),
                 ("dry_run", .bool(dryRun)), ("seconds", .double(seconds)), ("summary", .string(summary))])
    }

    public var lines: [String] {
        var out = [summary]
        if let to, !dryRun {
            out.append("  \(to)/files: the home; \(to)/database.sql: the dump; \(to)/tenant.json: the tenant's record")
        }
        return out
    }
}

/// `backup restore SLUG [--snapshot ID] [--to DIR]`: with `--to`, the snapshot's files, dump
/// and record go under DIR and nothing live changes. In place: a safety snapshot of what is
/// there now first; the snapshot is unpacked into root's staging; a restore that would not
/// fit the tenant's quota is refused before anything changes; the files are copied into the
/// home by the tenant's own user (rsync under setpriv: whatever links the tenant planted,
/// nothing is written where it could not write itself, and its quota holds); then its
/// database is dropped and loaded from the dump.
public struct BackupRestore: Operation {
    public var key: String
    public var snapshot: String?
    public var to: String?
    public var dryRun: Bool
    let code: String

    init(key: String, snapshot: String?, to: String?, dryRun: Bool, code: String) {
        self.key = key; self.snapshot = snapshot; self.to = to; self.dryRun = dryRun; self.code = code
    }

    public init(engine: Engine, key: String, snapshot: String?, to: String?, dryRun: Bool) throws {
        self.key = key; self.snapshot = snapshot; self.to = to; self.dryRun = dryRun
        code = try engine.store.queue.read { db in try StateStore.find(db, key).code }
    }

    public var name: String { "backup restore" }
    public var target: String { code }
    public var lock: OperationLock { .none }

    public func run(_ context: OperationContext) throws -> BackupRestoreReport {
        let e = context.engine, c = e.config
        try Backups.require(c)
        let started = e.time.now()
        let t = try e.store.queue.read { db in try StateStore.find(db, code) }
        let restic = Restic(c)
        let snap = try Backups.snapshot(restic, t, id: snapshot)
        guard snap.paths.count == 2 else {
            throw DesaError.invalid("snapshot \(snap.short_id) does not hold a home and a record as desa's backups do (paths: \(snap.paths.joined(separator: ", ")))")
        }
        let size = try restic.restoreSize(snap.id)
        var report = BackupRestoreReport(slug: t.slug, snapshot: snap.short_id, takenAt: snap.time.prefix(19).replacingOccurrences(of: "T", with: " "),
                                         to: to, sizeBytes: size, dryRun: dryRun)
        if to == nil {
            guard t.status == .active, t.desired != .deleted else {
                throw DesaError(.conflict, "tenant \(t.slug) is \(t.status.rawValue): restore it in place once it is active, or use --to DIR")
            }
            if c.quota.backend != .none {
                let limit = try e.store.queue.read { db in try TenantQuota.fetchOne(db, key: t.code) }?.bytes ?? c.quota.default.bytes
                guard size <= limit else {
                    throw DesaError(.conflict, "snapshot \(snap.short_id) holds \(ByteSize.readable(size)), more than \(t.slug)'s quota of \(ByteSize.readable(limit)): raise it first (desactl quota set \(t.slug) SIZE); nothing was changed")
                }
            }
        }
        if dryRun { return report }
        try Backups.ensureStaging(c)
        if let to {
            try restoreAside(snap, to: to, restic)
        } else {
            report.safety = try Backups.backUp(t, e, tags: ["safety"]).snapshot
            report.database = try restoreInPlace(t, snap, restic, e)
            context.note("tenant \(t.slug) (\(t.code)) restored in place from snapshot \(snap.short_id) of \(report.takenAt); what was there before is snapshot \(report.safety ?? "?")",
                         tenant: t, priority: .notice, fields: ["MESSAGE_ID": BackupMessageID.restored, "DESA_BACKUP_SNAPSHOT": snap.short_id])
        }
        report.seconds = e.time.now().timeIntervalSince(started)
        return report
    }

    /// `--to DIR`: DIR/files, DIR/database.sql, DIR/tenant.json, made by root (0700).
    func restoreAside(_ snap: Restic.Snapshot, to dir: String, _ restic: Restic) throws {
        var st = stat()
        if lstat(dir, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR, ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? ["?"]).isEmpty else {
                throw DesaError.invalid("\(dir) exists and is not an empty directory; restore --to needs a new or empty one")
            }
        } else {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        chmod(dir, 0o700)
        let tmp = dir + "/.desa-restore"
        try restic.restore(snap.id, to: tmp)
        let fm = FileManager.default
        try fm.moveItem(atPath: tmp + snap.paths[0], toPath: dir + "/files")
        for f in ["tenant.json", "database.sql"] where fm.fileExists(atPath: tmp + snap.paths[1] + "/" + f) {
            try fm.moveItem(atPath: tmp + snap.paths[1] + "/" + f, toPath: dir + "/" + f)
        }
        try fm.removeItem(atPath: tmp)
    }

    /// In place; the name of the database loaded, if any.
    func restoreInPlace(_ t: Tenant, _ snap: Restic.Snapshot, _ restic: Restic, _ e: Engine) throws -> String? {
        let c = e.config
        let held = try Backups.tenantLock(c, t, timeout: 600)
        defer { withExtendedLifetime(held) {} }
        guard let user = try e.users.tenants(prefix: c.userPrefix).first(where: { $0.name == t.userName(prefix: c.userPrefix) }) else {
            throw DesaError.system("tenant \(t.slug) has no user")
        }
        let asTenant = ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--reset-env", "--"]
        // Unpacked where only root can look, then handed to the tenant under a random name.
        let unpack = c.backupStagingDir + "/tenants/restore-" + t.code.filter(\.isNumber)
        try? FileManager.default.removeItem(atPath: unpack)
        defer { try? FileManager.default.removeItem(atPath: unpack) }
        try restic.restore(snap.id, to: unpack)
        let stage = unpack + snap.paths[1]
        guard let data = FileManager.default.contents(atPath: stage + "/tenant.json"),
              let record = try? JSONDecoder().decode(TenantBackupRecord.self, from: data) else {
            throw DesaError.invalid("snapshot \(snap.short_id) has no readable tenant.json")
        }
        guard record.code == t.code else { throw DesaError.invalid("snapshot \(snap.short_id) is of \(record.code), not of \(t.code)") }
        var database: String?
        if let name = record.database {
            guard c.mariadb.enabled, let row = try e.databaseRecord(t.code), row.desired == .present, row.name == name else {
                throw DesaError(.conflict, "snapshot \(snap.short_id) holds the database \(name), but \(t.slug) has no such database now: create it (desactl db create \(t.slug)) and restore again; nothing was changed")
            }
            guard MariaDBDump.completed(stage + "/database.sql") else {
                throw DesaError.invalid("snapshot \(snap.short_id)'s dump has no \"Dump completed\" trailer; nothing was changed")
            }
            database = name
        }
        let work = c.backupStagingDir + "/restore/" + t.code.filter(\.isNumber) + "-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        var top = stat()
        guard lstat(unpack + snap.paths[0], &top) == 0, (top.st_mode & S_IFMT) == S_IFDIR else {
            throw DesaError.invalid("snapshot \(snap.short_id) holds no home directory")
        }
        try FileManager.default.moveItem(atPath: unpack + snap.paths[0], toPath: work)
        // Still root's alone (0700), the files take the tenant's owner, and its group where
        // they had the tenant's old one (a new server gives new ids; the web server's stays).
        chmod(work, 0o700)
        let www = try Users.gid(ofGroup: c.webGroup)
        try Backups.reown(work, uid: record.uid, to: user.uid, oldGID: record.uid, newGID: user.gid, keepGID: Int(www))
        // The home's own owner and mode, which rsync gives the live home.
        chown(work, uid_t(user.uid), www)
        chmod(work, top.st_mode & 0o7777)
        defer {
            // The tenant empties what it was given; root removes only the empty directory.
            _ = try? e.runner.run(asTenant + ["/usr/bin/find", work, "-mindepth", "1", "-delete"])
            rmdir(work)
        }
        let excludes = ["/tmp/", "/sessions/", "/lost+found/", "/logs", "/" + DatabasesCapability.credentialsFile, "/" + DatabasesCapability.stagedFile]
        let r = try e.runner.run(asTenant + ["/usr/bin/rsync", "-rlpt", "--delete"] + excludes.map { "--exclude=" + $0 }
                                  + [work + "/", t.home(c) + "/"])
        guard r.ok else {
            throw DesaError.system("copying the files into \(t.home(c)) as \(user.name) failed (rsync exit \(r.status)): \(Restic.trim(r.message)); what was there before is the safety snapshot")
        }
        if let name = database {
            do { try MariaDBDump.load(name, from: stage + "/database.sql", settings: c.mariadb) } catch {
                throw DesaError.system(Applier.message(error) + "; what was there before is the safety snapshot")
            }
        }
        return database
    }
}

extension Backups {
    /// The tenant's snapshot `id` (it must carry the tenant's code), or its latest one that
    /// is not a safety snapshot.
    static func snapshot(_ restic: Restic, _ t: Tenant, id: String?) throws -> Restic.Snapshot {
        let all = try restic.snapshots(tags: ["code:" + t.code])
        if let id {
            guard let s = all.first(where: { $0.id.hasPrefix(id) || $0.short_id == id }) else {
                throw DesaError(.notFound, "no snapshot \(id) of \(t.slug) (desactl backup snapshots \(t.slug) lists them)")
            }
            return s
        }
        guard let s = all.filter({ !($0.tags ?? []).contains("safety") }).max(by: { $0.time < $1.time }) else {
            throw DesaError(.notFound, "\(t.slug) has no snapshot to restore")
        }
        return s
    }

    /// Gives the tree under `root` (root's alone: nothing races this) from `uid` to `newUID`,
    /// and from group `oldGID` to `newGID` unless it is `keepGID`, never following a link.
    static func reown(_ root: String, uid: Int, to newUID: Int, oldGID: Int, newGID: Int, keepGID: Int) throws {
        guard let walker = FileManager.default.enumerator(atPath: root) else { return }
        func fix(_ p: String) {
            var st = stat()
            guard lstat(p, &st) == 0 else { return }
            let u = Int(st.st_uid) == uid ? newUID : Int(st.st_uid)
            let g = Int(st.st_gid) == keepGID ? keepGID : (Int(st.st_gid) == oldGID ? newGID : Int(st.st_gid))
            if u != Int(st.st_uid) || g != Int(st.st_gid) {
                lchown(p, uid_t(u), gid_t(g))
                // chown clears set-id bits; a directory keeps its setgid (new files keep the web group).
                if (st.st_mode & S_IFMT) == S_IFDIR { chmod(p, st.st_mode & 0o7777) }
            }
        }
        fix(root)
        while let rel = walker.nextObject() as? String { fix(root + "/" + rel) }
    }
}

extension Engine {
    /// `create`: a village this server does not have is made from its latest snapshot's
    /// record first (a new server, the repository alone), then restored in place.
    public func backupRestore(_ key: String, snapshot: String?, to: String?, dryRun: Bool, create: Bool = false) throws -> BackupRestoreReport {
        let known = try store.queue.read { db in try? StateStore.find(db, key) }
        if known == nil {
            try Backups.require(config)
            let restic = Restic(config)
            let tag = key.contains(".") ? "code:" + key : "slug:" + key
            let snaps = try restic.snapshots(tags: [tag]).filter { !($0.tags ?? []).contains("safety") }
            guard let snap = snapshot.flatMap({ id in snaps.first { $0.id.hasPrefix(id) } }) ?? snaps.max(by: { $0.time < $1.time }) else {
                throw DesaError(.notFound, "no tenant \(Quote.show(key)) here, and the repository has no snapshot of it")
            }
            guard create, to == nil else {
                if to != nil { return try restoreUnknown(snap, key: key, to: to!, restic) }
                throw DesaError(.notFound, "no tenant \(Quote.show(key)) here; the repository has snapshot \(snap.short_id) of it: add --create to make it from its record and restore it")
            }
            try createFromRecord(snap, restic, dryRun: dryRun)
            if dryRun {
                return BackupRestoreReport(slug: snap.tag("slug") ?? key, snapshot: snap.short_id, takenAt: snap.time, to: nil,
                                           sizeBytes: try restic.restoreSize(snap.id), dryRun: true)
            }
            return try perform(try BackupRestore(engine: self, key: snap.tag("code") ?? key, snapshot: snap.id, to: nil, dryRun: false))
        }
        return try perform(try BackupRestore(engine: self, key: key, snapshot: snapshot, to: to, dryRun: dryRun))
    }

    /// `--to DIR` for a village this server does not know.
    func restoreUnknown(_ snap: Restic.Snapshot, key: String, to: String, _ restic: Restic) throws -> BackupRestoreReport {
        let op = BackupRestore(key: key, snapshot: snap.id, to: to, dryRun: false, code: snap.tag("code") ?? key)
        try Backups.ensureStaging(config)
        try op.restoreAside(snap, to: to, restic)
        return BackupRestoreReport(slug: snap.tag("slug") ?? key, snapshot: snap.short_id, takenAt: snap.time, to: to,
                                   sizeBytes: try restic.restoreSize(snap.id))
    }

    /// Makes the tenant its snapshot's `tenant.json` describes: code, name, kecamatan, slug,
    /// template, PHP (when this server has it), a database if it had one, its quota, its aliases.
    func createFromRecord(_ snap: Restic.Snapshot, _ restic: Restic, dryRun: Bool) throws {
        guard snap.paths.count == 2 else { throw DesaError.invalid("snapshot \(snap.short_id) is not one of desa's") }
        let r = try restic.must(["dump", "--no-lock", snap.id, snap.paths[1] + "/tenant.json"], "dump of tenant.json")
        guard let record = try? JSONDecoder().decode(TenantBackupRecord.self, from: Data(r.stdout.utf8)) else {
            throw DesaError.invalid("snapshot \(snap.short_id) has no readable tenant.json")
        }
        let village = try Village.validated(code: record.code, name: record.name, district: record.districtName, regency: config.regencyCode,
                                            kind: record.kind, districtCode: record.districtCode)
        let options = TenantOptions(template: record.template, php: config.php.versions[record.php] != nil ? record.php : nil,
                                    withDB: record.database != nil && config.mariadb.enabled,
                                    quota: config.quota.backend == .none ? nil : record.quotaBytes.map { ByteSize(bytes: $0) })
        let made = try create(village, slug: record.slug, options: options, dryRun: dryRun)
        if dryRun { return }
        try check(made, "creating \(record.slug) from its record")
        for alias in record.aliases { try check(try addAlias(record.code, domain: alias), "adding its alias \(alias)") }
    }
}
