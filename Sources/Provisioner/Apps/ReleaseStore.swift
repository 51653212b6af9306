import Crypto
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// What `app release add` did.
public struct ReleaseAddReport: OperationReport {
    public var release: AppRelease
    public var path: String
    /// The same tarball was stored before: nothing changed.
    public var alreadyStored: Bool
    public var notes: [String]

    public var summary: String {
        alreadyStored ? "\(release.app) \(release.version) was already stored" : "\(release.app) \(release.version) stored in \(path), \(release.files) files"
    }
    public var exitStatus: Int32 { ExitStatus.ok }
    public var didNothing: Bool { alreadyStored }
    public var json: JSON { .object([("release", Releases.json(release, path: path, tenants: nil)), ("already_stored", .bool(alreadyStored)),
                                     ("notes", .array(notes.map { .string($0) }))]) }
    public var lines: [String] {
        [alreadyStored ? "\(release.app) \(release.version) is already stored in \(path) (the same tarball); nothing changed."
                       : "\(release.app) \(release.version) (database \(release.databaseVersion)) is stored in \(path): \(release.files) files, \(Releases.mib(release.bytes)), read-only, shared by every tenant that runs it."]
            + notes.map { "NOTE " + $0 }
    }
}

/// `app release add`: one release unpacked, checked and stored at a time.
public struct ReleaseAdd: Operation {
    public var tarball: String
    let lockPath: String
    public init(engine: Engine, tarball: String) {
        self.tarball = tarball
        lockPath = engine.config.appsStateDir + "/releases.lock"
    }
    public var name: String { "app release add" }
    public var target: String { (tarball as NSString).lastPathComponent }
    public var dryRun: Bool { false }
    public var lock: OperationLock { .file(lockPath, timeout: 600) }
    public func run(_ context: OperationContext) throws -> ReleaseAddReport {
        let (r, already, notes) = try Releases.add(context.engine, tarball: tarball)
        if !already { context.note("\(r.app) \(r.version) stored (\(r.files) files, from \(r.source))", priority: .notice) }
        return ReleaseAddReport(release: r, path: Releases.path(context.engine.config, r), alreadyStored: already, notes: notes)
    }
}

/// Releases stored once, root's and read-only, under `apps.release_dir/APP/VERSION`.
public enum Releases {
    public static let apps = ["opensid"]

    public static func path(_ c: Config, _ r: AppRelease) -> String { path(c, app: r.app, version: r.version) }
    public static func path(_ c: Config, app: String, version: String) -> String { c.releaseDir + "/" + app + "/" + version }

    static func mib(_ bytes: Int64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

    static func json(_ r: AppRelease, path: String, tenants: Int?) -> JSON {
        var fields: [(String, JSON)] = [("app", .string(r.app)), ("version", .string(r.version)), ("database_version", .string(r.databaseVersion)),
                                        ("php_min", .str(r.phpMin)), ("php_max", .str(r.phpMax)), ("sha256", .string(r.sha256)),
                                        ("source", .string(r.source)), ("files", .int(r.files)), ("bytes", .int(Int(r.bytes))),
                                        ("added_at", .string(Timestamp.format(r.addedAt))), ("path", .string(path))]
        if let tenants { fields.append(("tenants", .int(tenants))) }
        return .object(fields)
    }

    /// A version as a release states it: digits and dots, an optional suffix; never a path.
    static func validVersion(_ v: String) -> Bool {
        let parts = v.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        let nums = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard (1...4).contains(nums.count), nums.allSatisfy({ (1...8).contains($0.count) && $0.allSatisfy { $0.isASCII && $0.isNumber } }) else { return false }
        if parts.count == 2 {
            return (1...32).contains(parts[1].count) && parts[1].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == ".") }
        }
        return true
    }

    /// The directory for releases: root's, 0755, and reachable by the tenants (their PHP reads it).
    static func ensureDirs(_ c: Config) throws {
        for (d, mode) in [(c.releaseDir, mode_t(0o755)), (c.releaseDir + "/opensid", 0o755), (c.appsStateDir, 0o700)] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            var st = stat()
            guard lstat(d, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == 0 else { throw DesaError.system("\(d) must be a directory owned by root") }
            chmod(d, mode)
        }
        try writePHPWrappers(c)
        // Every directory above must let others pass, or no tenant's PHP can read the code.
        var p = (c.releaseDir as NSString).deletingLastPathComponent
        while p != "/" && !p.isEmpty {
            var st = stat()
            guard stat(p, &st) == 0 else { break }
            if st.st_mode & 0o001 == 0 {
                throw DesaError(.config, "\(p) (\(String(st.st_mode & 0o7777, radix: 8))) does not let others pass, so tenants could not read the releases under \(c.releaseDir): chmod o+x \(p), or set apps.release_dir elsewhere")
            }
            p = (p as NSString).deletingLastPathComponent
        }
    }

    /// Where the pools find `php` first (`env[PATH]`): desa's wrapper of this PHP version.
    public static func phpBinDir(_ c: Config, _ version: String) -> String { c.releaseDir + "/.bin/" + version }

    /// The wrappers, one per configured PHP version: the job runs with the pool's own
    /// environment, not the request's FastCGI parameters.
    static func writePHPWrappers(_ c: Config) throws {
        for v in c.php.versions.keys.sorted() where v.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
            let dir = phpBinDir(c, v)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            chmod(c.releaseDir + "/.bin", 0o755); chmod(dir, 0o755)
            try AtomicFiles.write([FileWrite(path: dir + "/php", content: """
            #!/bin/sh
            # Written by desa: the `php` a village's PHP starts (OpenSID's background jobs). PHP-FPM
            # hands its workers' children the request's FastCGI parameters as environment
            # (REQUEST_METHOD, REQUEST_URI...), and a CLI job that sees them takes itself for a web
            # request; it runs with the pool's own environment only.
            exec /usr/bin/env -i PATH=/usr/bin:/bin HOME="$HOME" TMPDIR="$TMPDIR" LANG=C.UTF-8 /usr/bin/php\(v) "$@"

            """, mode: 0o755)])
        }
    }

    static func sha256(of path: String) throws -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { throw DesaError.invalid("cannot read \(path)") }
        defer { try? h.close() }
        var hasher = SHA256()
        while let chunk = try h.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Unpacks `tarball`, checks it is an OpenSID release and stores it. Returns the
    /// release, whether the same tarball was stored before, and notes.
    static func add(_ e: Engine, tarball: String) throws -> (AppRelease, Bool, [String]) {
        let c = e.config
        var st = stat()
        guard stat(tarball, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(tarball, R_OK) == 0 else {
            throw DesaError.invalid("cannot read the release tarball \(tarball)")
        }
        try ensureDirs(c)
        let sum = try sha256(of: tarball)
        let incoming = c.releaseDir + "/.incoming-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        guard mkdir(incoming, 0o700) == 0 else { throw DesaError.system("cannot create \(incoming): \(errnoText())") }
        defer { try? FileManager.default.removeItem(atPath: incoming) }
        let tar = try e.runner.run(["/bin/tar", "-xzf", tarball, "-C", incoming, "--no-same-owner", "--no-same-permissions", "--no-overwrite-dir"])
        guard tar.ok else { throw DesaError.invalid("\(tarball) is not a readable .tar.gz: \(tar.message)") }
        // GitHub's archives hold one folder (OpenSID-2410.0.0/); `git archive` none.
        var root = incoming
        let top = (try? FileManager.default.contentsOfDirectory(atPath: incoming)) ?? []
        if !top.contains("index.php"), top.count == 1, isDirectory(incoming + "/" + top[0]) { root = incoming + "/" + top[0] }
        guard isFile(root + "/index.php"), isDirectory(root + "/donjo-app"), let helper = AtomicFiles.read(root + "/donjo-app/helpers/opensid_helper.php") else {
            throw DesaError.invalid("\(tarball) does not look like an OpenSID release: no index.php, donjo-app/ and donjo-app/helpers/opensid_helper.php at its top (or under its one folder)")
        }
        guard let version = define("VERSION", in: helper), validVersion(version) else {
            throw DesaError.invalid("\(tarball): donjo-app/helpers/opensid_helper.php states no VERSION desa can use (got \(Quote.show(define("VERSION", in: helper) ?? "")))")
        }
        guard let dbVersion = define("VERSI_DATABASE", in: helper), !dbVersion.isEmpty, dbVersion.count <= 16, dbVersion.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw DesaError.invalid("\(tarball): donjo-app/helpers/opensid_helper.php states no VERSI_DATABASE (the schema it migrates to)")
        }
        let sistem = AtomicFiles.read(root + "/app/Libraries/Sistem.php") ?? ""
        let phpMin = define("minPhpVersion", in: sistem), phpMax = define("maxPhpVersion", in: sistem)
        // What OpenSID's first run would make in its own code (vendor/opensid/router's Hook
        // creates donjo-app/Middleware and donjo-app/Routes): made now, as the code stays
        // read-only once tenants run it.
        for d in ["donjo-app/Middleware", "donjo-app/Routes"] where !isDirectory(root + "/" + d) { mkdir(root + "/" + d, 0o755) }
        let (files, bytes) = try normalize(root)
        var notes: [String] = []
        if let n = phpNote(e, min: phpMin, max: phpMax, version: version) { notes.append(n) }

        let dest = path(c, app: "opensid", version: version)
        if let old = try e.store.queue.read({ db in try AppRelease.fetchOne(db, key: ["app": "opensid", "version": version]) }) {
            guard old.sha256 == sum, isDirectory(dest) else {
                throw DesaError(.conflict, "opensid \(version) is already stored, from another tarball (\(old.source), sha256 \(old.sha256.prefix(12))...); a release's code never changes under the tenants that run it")
            }
            return (old, true, notes)
        }
        if isDirectory(dest) {
            // A directory no record names (an add killed before it recorded): replaced.
            try FileManager.default.removeItem(atPath: dest)
        }
        guard rename(root, dest) == 0 else { throw DesaError.system("cannot move the release to \(dest): \(errnoText())") }
        let r = AppRelease(app: "opensid", version: version, databaseVersion: dbVersion, phpMin: phpMin, phpMax: phpMax, sha256: sum,
                           source: (tarball as NSString).lastPathComponent, files: files, bytes: bytes, addedAt: e.time.now())
        try e.store.queue.write { db in try r.insert(db) }
        return (r, false, notes)
    }

    /// `define('NAME', 'value')` in PHP source.
    static func define(_ name: String, in source: String) -> String? {
        for line in source.split(separator: "\n") where line.contains("define(") && line.contains("'\(name)'") {
            let parts = line.split(separator: "'", omittingEmptySubsequences: false)
            if let i = parts.firstIndex(where: { $0 == name }), i + 2 < parts.count { return String(parts[i + 2]) }
        }
        return nil
    }

    /// Owner root, directories 0755, files 0644 (0755 where the archive had an execute
    /// bit); links only within the release; anything else (devices, fifos) removed. The
    /// operator's umask reaches nothing.
    static func normalize(_ root: String) throws -> (files: Int, bytes: Int64) {
        var files = 0
        var bytes: Int64 = 0
        func walk(_ dir: String, depth: Int) throws {
            for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
                let p = dir + "/" + name
                var st = stat()
                guard lstat(p, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    lchown(p, 0, 0); chmod(p, 0o755)
                    try walk(p, depth: depth + 1)
                case S_IFREG:
                    lchown(p, 0, 0); chmod(p, (st.st_mode & 0o111) != 0 ? 0o755 : 0o644)
                    files += 1; bytes += Int64(st.st_size)
                case S_IFLNK:
                    let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: p)) ?? "/"
                    // A relative link that stays inside the release.
                    var level = depth
                    var inside = !target.hasPrefix("/")
                    for comp in target.split(separator: "/") where inside {
                        if comp == ".." { level -= 1; if level < 0 { inside = false } } else if comp != "." { level += 1 }
                    }
                    if inside { lchown(p, 0, 0) } else { unlink(p) }
                default:
                    unlink(p)
                }
            }
        }
        lchown(root, 0, 0); chmod(root, 0o755)
        try walk(root, depth: 0)
        return (files, bytes)
    }

    /// What this server's PHP is beside the versions the release declares.
    static func phpNote(_ e: Engine, min: String?, max: String?, version: String) -> String? {
        guard let min, let max else { return nil }
        let php = e.config.php.default
        let running = (try? e.runner.run(["/usr/bin/php\(php)", "-r", "echo PHP_VERSION;"]))?.stdout ?? ""
        guard !running.isEmpty else { return nil }
        if running.compare(min, options: .numeric) == .orderedAscending || running.compare(max, options: .numeric) == .orderedDescending {
            return "OpenSID \(version) declares PHP \(min) to \(max); the pools run PHP \(running). Its web installer would refuse it and its Info Sistem page marks it unsupported; desa does not use the installer and does not change OpenSID. If a village needs a PHP it declares, configure it under [php.versions] and run: desactl tenant set SLUG --php VERSION"
        }
        return nil
    }

    static func isDirectory(_ p: String) -> Bool { var st = stat(); return lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR }
    static func isFile(_ p: String) -> Bool { var st = stat(); return lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG }

    /// A stored release, or an error naming what is stored.
    static func find(_ e: Engine, app: String, version: String) throws -> AppRelease {
        let all = try e.store.queue.read { db in try AppRelease.filter(Column("app") == app).fetchAll(db) }
        guard let r = all.first(where: { $0.version == version }) else {
            let have = all.map(\.version).sorted { $0.compare($1, options: .numeric) == .orderedAscending }
            throw DesaError(.notFound, "\(app) \(version) is not stored (\(have.isEmpty ? "none is" : "stored: " + have.joined(separator: ", "))); add it with desactl app release add \(app) TARBALL")
        }
        guard isDirectory(path(e.config, r)) else { throw DesaError.system("\(app) \(version) is recorded but \(path(e.config, r)) is missing: add its tarball again") }
        return r
    }

    /// Releases, newest first, with how many tenants run each.
    static func list(_ e: Engine) throws -> [(AppRelease, Int)] {
        try e.store.queue.read { db in
            let running = Dictionary(grouping: try TenantApp.fetchAll(db), by: { $0.app + "/" + $0.release }).mapValues(\.count)
            let targets = Dictionary(grouping: try TenantApp.fetchAll(db).compactMap { t in t.target.map { t.app + "/" + $0 } }, by: { $0 }).mapValues(\.count)
            return try AppRelease.fetchAll(db).sorted { a, b in
                a.app != b.app ? a.app < b.app : a.version.compare(b.version, options: .numeric) == .orderedDescending
            }
                .map { ($0, (running[$0.app + "/" + $0.version] ?? 0) + (targets[$0.app + "/" + $0.version] ?? 0)) }
        }
    }
}
