import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// What `backup forget` did.
public struct BackupForgetReport: OperationReport {
    public var kept = 0
    public var removed = 0
    public var dryRun = false
    public var summary: String {
        (dryRun ? "would keep" : "kept") + " \(kept) snapshot\(kept == 1 ? "" : "s"), " + (dryRun ? "would remove" : "removed")
            + " \(removed)" + (dryRun ? "" : " and pruned the repository")
    }
    public var exitStatus: Int32 { ExitStatus.ok }
    public var json: JSON { .object([("kept", .int(kept)), ("removed", .int(removed)), ("dry_run", .bool(dryRun))]) }
    public var lines: [String] { [summary] }
}

/// `backup forget`: the retention, per tenant (`keep_daily`, `keep_weekly`, `keep_monthly`;
/// safety snapshots are a group of their own), then `prune`. Against an append-only
/// repository it fails, as it must: the repository's owner prunes it with full credentials.
public struct BackupForget: Operation {
    public var dryRun: Bool
    public init(dryRun: Bool) { self.dryRun = dryRun }
    public var name: String { "backup forget" }
    public var target: String { "all" }
    public var lock: OperationLock { .none }

    public func run(_ context: OperationContext) throws -> BackupForgetReport {
        let c = context.engine.config
        try Backups.require(c)
        let held = try Backups.runLock(c)
        defer { withExtendedLifetime(held) {} }
        let b = c.backup
        var args = ["forget", "--json", "--tag", "desa", "--group-by", "host,tags",
                    "--keep-daily", "\(b.keepDaily)", "--keep-weekly", "\(b.keepWeekly)", "--keep-monthly", "\(b.keepMonthly)"]
        args.append(dryRun ? "--dry-run" : "--prune")
        let r = try Restic(c).run(args)
        guard r.ok else { throw DesaError.system("restic forget failed (exit \(r.status)): \(Restic.trim(r.message))") }
        struct Group: Decodable { var keep: [Restic.Snapshot]?; var remove: [Restic.Snapshot]? }
        let json = r.stdout.split(whereSeparator: \.isNewline).first { $0.hasPrefix("[") }.map(String.init) ?? "[]"
        let groups = (try? JSONDecoder().decode([Group]?.self, from: Data(json.utf8))) ?? []
        var report = BackupForgetReport(dryRun: dryRun)
        for g in groups { report.kept += g.keep?.count ?? 0; report.removed += g.remove?.count ?? 0 }
        return report
    }
}

/// What `backup verify` found.
public struct BackupVerifyReport: OperationReport {
    public var checked = ""
    public var drills: [(slug: String, snapshot: String, files: Int, ok: Bool, detail: String)] = []
    public var checkFailed: String?
    public var summary: String {
        let bad = drills.filter { !$0.ok }
        return (checkFailed.map { "repository check FAILED: \($0)" } ?? "repository check passed (\(checked))")
            + "; \(drills.count) restore drill\(drills.count == 1 ? "" : "s")" + (bad.isEmpty ? " passed" : ", FAILED: " + bad.map(\.slug).joined(separator: ", "))
    }
    public var exitStatus: Int32 { checkFailed == nil && drills.allSatisfy(\.ok) ? ExitStatus.ok : ExitStatus.failed }
    public var json: JSON {
        .object([("check", .string(checkFailed == nil ? "ok" : "failed")), ("check_error", .str(checkFailed)), ("read", .string(checked)),
                 ("drills", .array(drills.map { d in
                     .object([("slug", .string(d.slug)), ("snapshot", .string(d.snapshot)), ("files", .int(d.files)),
                              ("ok", .bool(d.ok)), ("detail", .string(d.detail))])
                 }))])
    }
    public var lines: [String] {
        drills.map { ($0.ok ? "ok " : "FAILED ") + "\($0.slug): snapshot \($0.snapshot) restored, \($0.files) files" + ($0.detail.isEmpty ? "" : ": \($0.detail)") } + [summary]
    }
}

/// `backup verify`: restic reads a share of the repository's data back
/// (`check --read-data-subset`), then a few tenants' last snapshots are restored into
/// scratch space and compared with what their backup recorded: as many files, a record of
/// the same tenant, and a complete dump where it had a database.
public struct BackupVerify: Operation {
    public var tenants: Int?
    public init(tenants: Int?) { self.tenants = tenants }
    public var name: String { "backup verify" }
    public var target: String { "all" }
    public var dryRun: Bool { false }
    public var lock: OperationLock { .none }

    public func run(_ context: OperationContext) throws -> BackupVerifyReport {
        let e = context.engine, c = e.config
        try Backups.require(c)
        let restic = Restic(c)
        var report = BackupVerifyReport()
        report.checked = "\(c.backup.verifyReadPercent)% of the data read"
        let r = try restic.run(["check", "--read-data-subset=\(c.backup.verifyReadPercent)%"])
        if !r.ok { report.checkFailed = Restic.trim(r.message) }
        let (records, byCode) = try e.store.queue.read { db in
            (try BackupRecord.fetchAll(db).filter { $0.lastSnapshot != nil },
             Dictionary(try Tenant.fetchAll(db).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a }))
        }
        try Backups.ensureStaging(c)
        for rec in records.shuffled().prefix(tenants ?? c.backup.drillTenants) {
            guard let t = byCode[rec.code], let id = rec.lastSnapshot else { continue }
            let scratch = c.backupStagingDir + "/tenants/drill-" + t.code.filter(\.isNumber)
            try? FileManager.default.removeItem(atPath: scratch)
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            do {
                let snap = try Backups.snapshot(restic, t, id: id)
                try BackupRestore(engine: e, key: t.code, snapshot: id, to: scratch, dryRun: false).restoreAside(snap, to: scratch, restic)
                var files = 0
                let walker = FileManager.default.enumerator(atPath: scratch)
                while let p = walker?.nextObject() as? String {
                    var st = stat()
                    if lstat(scratch + "/" + p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { files += 1 }
                }
                var problems: [String] = []
                if files != rec.files { problems.append("\(files) files restored, \(rec.files) backed up") }
                let record = FileManager.default.contents(atPath: scratch + "/tenant.json").flatMap { try? JSONDecoder().decode(TenantBackupRecord.self, from: $0) }
                if record?.code != t.code { problems.append("its tenant.json is missing or of another tenant") }
                if record?.database != nil && !MariaDBDump.completed(scratch + "/database.sql") { problems.append("its dump is incomplete") }
                report.drills.append((t.slug, snap.short_id, files, problems.isEmpty, problems.joined(separator: "; ")))
            } catch {
                report.drills.append((t.slug, id, 0, false, Applier.message(error)))
            }
        }
        for d in report.drills where !d.ok {
            context.note("backup verify: the restore drill of \(d.slug) FAILED: \(d.detail)", priority: .err, fields: ["MESSAGE_ID": BackupMessageID.failed])
        }
        return report
    }
}
