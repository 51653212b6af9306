import ArgumentParser
import Foundation
import GRDB

public struct AppCommand: ParsableCommand {

    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "app",
        abstract: "Applications for the villages: releases stored once, installed, upgraded in waves.",
        discussion: """
        A release is unpacked once (app release add) into apps.release_dir, root's and read-only;
        every village that runs it links to it and keeps only its own files (desa/, storage/,
        backup_inkremental/, index.php). app upgrade moves villages to another release: a canary,
        then growing waves, each village behind a health gate, rolled back with its database if
        it fails.
        """,
        subcommands: [Install.self, Release.self, Upgrade.self, List.self]
    )

    static func checkApp(_ app: String) throws {
        guard Releases.apps.contains(app) else { throw ValidationError("the only application is opensid (got \(app))") }
    }

    public struct Install: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Install OpenSID into a tenant, ready for the village's operator to log in.",
            discussion: """
            The tenant gets the opensid template and a database (if it has none). Its web root links
            to a stored release (--from stores the tarball's first, if it is not stored yet; --release
            picks a stored one; neither: the newest stored); OpenSID's database settings read the
            tenant's own file .my.cnf, so its web installer is never offered; OpenSID's first run fills
            the database before the site goes public; the admin's password is printed once (or read
            from --admin-password-file). It reports success only once the site answers. Needs
            mariadb.enabled = true and an empty web root.
            """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The application: opensid.") var app: String
        @Argument(help: "Slug or village code.") var tenant: String
        @Option(name: .customLong("from"), help: "A release tarball, e.g. opensid-v2410.0.0.tar.gz (flat, or GitHub's with one folder).") var tarball: String?
        @Option(help: "A stored release's version, e.g. 2410.0.0.") var release: String?
        @Option(help: "A file holding the admin's password (OpenSID's rule: 8 to 20 characters, a digit, a lower- and an uppercase letter, a symbol); without it one is made and printed once.") var adminPasswordFile: String?
        @Flag(help: "Print JSON (with the password when desactl made it).") var json = false

        public func validate() throws {
            try AppCommand.checkApp(app)
            if tarball != nil && release != nil { throw ValidationError("give --from TARBALL or --release VERSION, not both") }
        }

        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: json)
                var password: String?
                if let f = adminPasswordFile {
                    guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { throw DesaError(.invalidInput, "cannot read \(f)") }
                    password = text.trimmingCharacters(in: .newlines)
                }
                let r: AppInstallReport
                do { r = try e.installOpenSID(tenant, tarball: tarball, version: release, adminPassword: password) } catch let err as DesaError where err.kind == .notFound {
                    // An unknown tenant is refused before the operation starts: audited here.
                    e.record(op: "app install", target: tenant, outcome: "rejected", detail: err.message)
                    throw err
                }
                try CLI.report(r, json: json)
            }
        }
    }

    public struct Release: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Releases stored once, read-only, for every tenant.",
            subcommands: [Add.self, List.self, Prune.self])

        public struct Add: ParsableCommand {
            public init() {}
            public static let configuration = CommandConfiguration(
                abstract: "Unpack, check and store a release tarball.",
                discussion: """
                The version is read from the release itself (VERSION and VERSI_DATABASE in
                donjo-app/helpers/opensid_helper.php), the PHP versions it declares are compared with the
                pools'. Flat tarballs and GitHub's (one top-level folder) are both accepted. Files become
                root's, 0644 (folders 0755) whatever the umask; links out of the release and device files
                are dropped. The same tarball again changes nothing; another tarball with a stored version
                is refused.
                """)
            @OptionGroup var global: GlobalOptions
            @Argument(help: "The application: opensid.") var app: String
            @Argument(help: "The release tarball.") var tarball: String
            @Flag(help: "Print JSON.") var json = false
            public func validate() throws { try AppCommand.checkApp(app) }
            public func run() throws {
                try CLI.run {
                    let e = try global.engine(json: json)
                    try CLI.report(try e.perform(ReleaseAdd(engine: e, tarball: tarball)), json: json)
                }
            }
        }

        public struct List: ParsableCommand {
            public init() {}
            public static let configuration = CommandConfiguration(abstract: "The stored releases, newest first, with how many tenants run each.")
            @OptionGroup var global: GlobalOptions
            @Flag(help: "Print JSON.") var json = false
            public func run() throws {
                try CLI.run {
                    let e = try global.engine(json: true)
                    let all = try Releases.list(e)
                    if json { CLI.printJSON(.array(all.map { Releases.json($0.0, path: Releases.path(e.config, $0.0), tenants: $0.1) })); return }
                    print(all.isEmpty ? "No release is stored: desactl app release add opensid TARBALL" :
                          Table.render(header: ["APP", "VERSION", "DATABASE", "PHP", "TENANTS", "SIZE", "ADDED", "FROM"],
                                       rows: all.map { r, n in [r.app, r.version, r.databaseVersion, "\(r.phpMin ?? "?")-\(r.phpMax ?? "?")", "\(n)",
                                                                Releases.mib(r.bytes), Timestamp.format(r.addedAt), r.source] }))
                }
            }
        }

        public struct Prune: ParsableCommand {
            public init() {}
            public static let configuration = CommandConfiguration(
                abstract: "Remove releases no tenant runs, beyond the newest apps.keep_releases of each application.")
            @OptionGroup var global: GlobalOptions
            @Flag(help: "Say what would go; remove nothing.") var dryRun = false
            @Flag(help: "Print JSON.") var json = false
            public func run() throws {
                try CLI.run {
                    let e = try global.engine(json: json)
                    try CLI.report(try e.perform(ReleasePrune(engine: e, dryRun: dryRun)), json: json)
                }
            }
        }
    }

    public struct Upgrade: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Move tenants to another OpenSID release: a canary, then waves, each tenant behind a health gate.",
            discussion: """
            Per tenant: it must answer before (a failing site is skipped and reported); its database
            is dumped for a rollback (and a backup snapshot is taken when backups are on); it answers
            503 with Retry-After while its release is switched in one step; OpenSID's migrations run
            as the tenant within apps.migration_timeout; the gate wants its home page and /siteman to
            answer 200, its migrasi table to hold the release's VERSI_DATABASE and no new fatal error
            in its PHP log. A tenant that fails the gate gets its old release and its database back;
            the run stops, tenants already upgraded stay, the rest are untouched, and the exit status
            is 1. The canary is apps.canary (or the first named); waves follow apps.waves. A tenant
            still holding a full copy (installed before releases were shared) first moves to the
            stored release of its own version, with its data. --resume goes on with the stopped run
            after a fix: an interrupted tenant is first brought back to its old release.
            """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The application: opensid.") var app: String
        @Argument(help: "Slugs or village codes (or --all).") var tenants: [String] = []
        @Flag(help: "Every tenant that runs the application.") var all = false
        @Option(name: .customLong("to"), help: "A stored release's version.") var version: String?
        @Option(name: .customLong("from"), help: "A release tarball: stored first, then the target.") var tarball: String?
        @Flag(help: "Go on with the last run that stopped.") var resume = false
        @Flag(help: "Print the waves; change nothing.") var dryRun = false
        @Flag(help: "Print JSON.") var json = false

        public func validate() throws {
            try AppCommand.checkApp(app)
            if resume {
                guard version == nil, tarball == nil, tenants.isEmpty, !all else { throw ValidationError("--resume takes the stopped run's release and tenants: give nothing else") }
                return
            }
            guard (version == nil) != (tarball == nil) else { throw ValidationError("give --to VERSION or --from TARBALL") }
            guard all != !tenants.isEmpty else { throw ValidationError("name tenants, or give --all") }
        }

        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: json)
                try CLI.report(try e.appUpgrade(tenants, version: version, tarball: tarball, resume: resume, dryRun: dryRun), json: json)
            }
        }
    }

    public struct List: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Per tenant: its application, release, state (ok, upgrading, rolled-back, failed) and since when.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: true)
                let rows = try e.store.queue.read { db in
                    let tenants = Dictionary(try Tenant.fetchAll(db).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
                    return try TenantApp.fetchAll(db).compactMap { a in tenants[a.code].map { ($0, a) } }.sorted { $0.0.slug < $1.0.slug }
                }
                if json {
                    CLI.printJSON(.array(rows.map { t, a in
                        .object([("slug", .string(t.slug)), ("code", .string(t.code)), ("app", .string(a.app)), ("release", .string(a.release)),
                                 ("state", .string(a.state.rawValue)), ("since", .string(Timestamp.format(a.since))), ("target", .str(a.target)),
                                 ("previous_release", .str(a.previousRelease)), ("error", .str(a.error))])
                    }))
                    return
                }
                print(rows.isEmpty ? "No tenant runs an application: desactl app install opensid SLUG" :
                      Table.render(header: ["SLUG", "APP", "RELEASE", "STATE", "SINCE", "DETAIL"],
                                   rows: rows.map { t, a in [t.slug, a.app, a.release, a.state.rawValue, Timestamp.format(a.since),
                                                             a.state == .ok ? "" : "to \(a.target ?? "?"): \(a.error ?? "")"] }))
            }
        }
    }
}

/// What `app release prune` removed (or would).
public struct ReleasePruneReport: OperationReport {
    public var removed: [String]
    public var kept: [String]
    public var dryRun: Bool
    public var summary: String { "\(dryRun ? "would remove" : "removed") \(removed.count) releases, kept \(kept.count)" }
    public var exitStatus: Int32 { ExitStatus.ok }
    public var didNothing: Bool { removed.isEmpty }
    public var json: JSON { .object([("removed", .array(removed.map { .string($0) })), ("kept", .array(kept.map { .string($0) })), ("dry_run", .bool(dryRun))]) }
    public var lines: [String] {
        removed.map { (dryRun ? "would remove " : "removed ") + $0 } + [(dryRun ? "Dry run: " : "") + summary + (kept.isEmpty ? "" : ": " + kept.joined(separator: ", "))]
    }
}

public struct ReleasePrune: Operation {
    public var dryRun: Bool
    let lockPath: String
    public init(engine: Engine, dryRun: Bool) { self.dryRun = dryRun; lockPath = engine.config.appsStateDir + "/releases.lock" }
    public var name: String { "app release prune" }
    public var target: String { "all" }
    public var lock: OperationLock { .file(lockPath, timeout: 600) }
    public func run(_ context: OperationContext) throws -> ReleasePruneReport {
        let e = context.engine
        // Under the upgrade lock too: a release an upgrade is about to use never goes.
        let held = dryRun ? nil : try StateLock(path: e.config.appsStateDir + "/upgrade.lock", timeout: 0)
        defer { withExtendedLifetime(held) {} }
        let used = try e.store.queue.read { db in
            Set(try TenantApp.fetchAll(db).flatMap { a in [a.release, a.target].compactMap { $0.map { a.app + "/" + $0 } } })
        }
        var removed: [String] = [], kept: [String] = []
        var newest: [String: Int] = [:]
        for (r, _) in try Releases.list(e) {
            let key = r.app + "/" + r.version
            let rank = newest[r.app, default: 0]
            newest[r.app] = rank + 1
            if rank < e.config.apps.keepReleases || used.contains(key) { kept.append(key); continue }
            removed.append(key)
            if dryRun { continue }
            let dir = Releases.path(e.config, r)
            // Out of sight in one rename, then removed.
            let gone = e.config.releaseDir + "/.removing-" + r.app + "-" + r.version
            if rename(dir, gone) == 0 || errno == ENOENT { try? FileManager.default.removeItem(atPath: gone) }
            _ = try e.store.queue.write { db in try AppRelease.deleteOne(db, key: ["app": r.app, "version": r.version]) }
            context.note("\(key) removed (no tenant runs it)", priority: .notice)
        }
        return ReleasePruneReport(removed: removed, kept: kept, dryRun: dryRun)
    }
}
