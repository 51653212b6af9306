import Foundation
import GRDB
import Testing
@testable import Provisioner

/// Releases stored once and villages upgraded in waves, with the real OpenSID v2409 and
/// v2410, a real mariadbd, nginx and php-fpm: four villages share one copy of the code;
/// a broken release fails the canary's gate and is rolled back with its data while the
/// others stay untouched; a run killed half-way and resumed leaves every village on one
/// release or the other, serving; a village already down is skipped and reported.
@Suite("OpenSID releases stored once, upgraded in waves behind a gate", .serialized)
struct OpenSIDUpgradeTests {
    static let v2409 = ProcessInfo.processInfo.environment["DESA_OPENSID_2409"] ?? "/work/shared/apps/opensid-v2409.0.0.tar.gz"
    static var haveReleases: Bool { FileManager.default.isReadableFile(atPath: v2409) && OpenSIDTemplateTests.haveRelease }
    static let missing: Comment = "OpenSID v2409 and v2410 are missing (see /work/shared/apps/SOURCE.md; DESA_OPENSID_2409 and DESA_OPENSID_TARBALL move them)"

    static let villages = [("32.04.08.2001", "cileunyi-kulon", "Cileunyi Kulon"), ("32.04.08.2002", "cileunyi-wetan", "Cileunyi Wetan"),
                           ("32.04.08.2003", "cimekar", "Cimekar"), ("32.04.08.2004", "cinunuk", "Cinunuk")]
    static func host(_ slug: String) -> String { slug + ".bandungkab.go.id" }

    func json(_ r: ProcessResult) throws -> Any { try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) }

    /// `app list --json`, by slug.
    func apps(_ h: SandboxHarness) throws -> [String: [String: Any]] {
        let r = try h.run("app", "list", "--json")
        try #require(r.ok, "\(r.message)")
        let rows = try #require(try json(r) as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: rows.map { ($0["slug"] as! String, $0) })
    }

    /// A query in a village's own database, as MariaDB's root.
    func query(_ h: SandboxHarness, _ code: String, _ sql: String) throws -> String {
        let found = try h.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '%\(code.filter(\.isNumber))'")
        let db = found.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(found.ok && !db.isEmpty && !db.contains("\n"), "the database of \(code): \(found.message)")
        let r = try h.sql("USE `\(db)`; " + sql)
        try #require(r.ok, "\(sql): \(r.message)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A release tarball made from a tree: `top` is its one folder (GitHub's), or none.
    func pack(_ h: SandboxHarness, _ tree: String, top: String?, to path: String) throws {
        let args = top.map { ["-C", (tree as NSString).deletingLastPathComponent, $0] } ?? ["-C", tree, "."]
        let r = try h.runner.run(["/bin/tar", "-czf", path] + args)
        try #require(r.ok, "tar: \(r.message)")
    }

    @Test("four villages share one stored release; a broken release is rolled back at the canary; a killed run resumes; v2410 reaches all",
          .enabled(if: haveReleases, missing))
    func upgradeInWaves() throws {
        let h = try SandboxHarness("osidupg", mariadb: true)
        defer { h.destroy() }
        let c = try h.config()

        // Releases: the flat v2409; a tarball that is no release is refused and stores nothing.
        let add = try h.desactl("app", "release", "add", "opensid", Self.v2409)
        try #require(add.ok, "\(add.message)")
        #expect(add.stdout.contains("opensid 2409.0.0 (database 2024090101) is stored"))
        #expect(try h.desactl("app", "release", "add", "opensid", Self.v2409).stdout.contains("already stored"))
        let junk = h.dir + "/junk"
        try FileManager.default.createDirectory(atPath: junk + "/donjo-app", withIntermediateDirectories: true)
        try "<?php\n".write(toFile: junk + "/index.php", atomically: true, encoding: .utf8)
        try pack(h, junk, top: nil, to: h.dir + "/junk.tar.gz")
        let refused = try h.desactl("app", "release", "add", "opensid", h.dir + "/junk.tar.gz")
        #expect(refused.status == 2 && refused.stderr.contains("does not look like an OpenSID release"), "\(refused.message)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: c.releaseDir + "/opensid") == ["2409.0.0"])
        // Root's and read-only, whatever the operator's umask (077 here).
        var st = stat()
        #expect(stat(c.releaseDir + "/opensid/2409.0.0/index.php", &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o644)
        #expect(stat(c.releaseDir + "/opensid/2409.0.0/donjo-app", &st) == 0 && st.st_mode & 0o777 == 0o755)

        // Four villages on v2409.
        let pw = h.dir + "/admin-password"
        let password = "Desa-\(UInt32.random(in: 100_000...999_999))-Kulon"
        try password.write(toFile: pw, atomically: true, encoding: .utf8)
        for (code, slug, name) in Self.villages {
            try #require(try h.desactl("tenant", "create", code, "--name", name, "--district", "Cileunyi").ok)
            let r = try h.desactl("app", "install", "opensid", slug, "--release", "2409.0.0", "--admin-password-file", pw)
            try #require(r.ok, "install \(slug): \(r.message)")
            #expect(try h.get(Self.host(slug)).status == 200)
            // The village's own data: a row in its database, an upload in its desa/.
            _ = try query(h, code, "CREATE TABLE desa_probe (v VARCHAR(64)); INSERT INTO desa_probe VALUES ('\(slug)')")
            let user = h.prefix + code.filter(\.isNumber)
            let up = try h.runner.run(["/usr/sbin/runuser", "-u", user, "--", "/bin/sh", "-c", "echo \"$1\" > \"$2\"", "sh", slug,
                                       c.webRoot + "/" + slug + "/public/desa/upload/probe.txt"])
            #expect(up.ok, "\(up.message)")
        }
        // The code is stored once: the four homes together hold far less than one release.
        let release = try #require(try h.run("app", "release", "list", "--json").stdout.data(using: .utf8))
        let bytes = try #require(((try JSONSerialization.jsonObject(with: release) as? [[String: Any]])?.first?["bytes"]) as? Int)
        let du = try h.runner.run(["/usr/bin/du", "-sb", "--apparent-size"] + Self.villages.map { c.webRoot + "/" + $0.1 })
        let homes = du.stdout.split(separator: "\n").compactMap { Int($0.split(separator: "\t").first ?? "") }.reduce(0, +)
        #expect(homes > 0 && homes * 5 < bytes, "4 homes hold \(homes) bytes against one release's \(bytes)")
        // A village cannot write the code it runs, through its links or directly.
        let user1 = h.prefix + "3204082001", pub1 = c.webRoot + "/cileunyi-kulon/public"
        for target in [pub1 + "/donjo-app/x.php", pub1 + "/assets/x.php", c.releaseDir + "/opensid/2409.0.0/x.php", pub1 + "/.release/index.php"] {
            let w = try h.runner.run(["/usr/sbin/runuser", "-u", user1, "--", "/usr/bin/touch", target])
            #expect(!w.ok, "\(target) is writable by the village")
        }

        // A village installed before releases were shared holds its own full copy (no record):
        // it moves to the stored release of its own version, with its data.
        let user4 = h.prefix + "3204082004", pub4 = c.webRoot + "/cinunuk/public"
        for e in try FileManager.default.contentsOfDirectory(atPath: pub4) where (try? FileManager.default.destinationOfSymbolicLink(atPath: pub4 + "/" + e)) != nil {
            try FileManager.default.removeItem(atPath: pub4 + "/" + e)
        }
        let copied = try h.runner.run(["/usr/sbin/runuser", "-u", user4, "--", "/bin/tar", "-xzf", Self.v2409, "-C", pub4, "--no-same-owner"])
        try #require(copied.ok, "\(copied.message)")
        try DatabaseQueue(path: c.databasePath).write { db in try db.execute(sql: "DELETE FROM tenant_app WHERE code = '32.04.08.2004'") }
        #expect(try h.get(Self.host("cinunuk")).status == 200)
        let moved = try h.desactl("app", "upgrade", "opensid", "cinunuk", "--to", "2409.0.0")
        #expect(moved.ok && moved.stdout.contains("cinunuk: moved"), "\(moved.message)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: pub4 + "/donjo-app") == ".release/donjo-app")
        #expect(try h.get(Self.host("cinunuk")).status == 200)
        #expect(try query(h, "32.04.08.2004", "SELECT v FROM desa_probe") == "cinunuk")
        #expect(try apps(h)["cinunuk"]?["release"] as? String == "2409.0.0")

        // A broken release (a fatal error in a helper every page loads): the canary fails its
        // gate and is rolled back with its data; the other three are untouched.
        let v2410 = try OpenSIDTemplateTests.unpacked.get()
        let broken = h.dir + "/broken"
        #expect(try h.runner.run(["/bin/cp", "-a", v2410, broken]).ok)
        let helper = broken + "/donjo-app/helpers/opensid_helper.php"
        let text = try #require(AtomicFiles.read(helper)).replacingOccurrences(of: "define('VERSION', '2410.0.0')", with: "define('VERSION', '2410.0.1')")
        try (text + "\ndesa_test_this_function_does_not_exist();\n").write(toFile: helper, atomically: true, encoding: .utf8)
        try pack(h, broken, top: nil, to: h.dir + "/broken.tar.gz")
        let failed = try h.desactl("app", "upgrade", "opensid", "--all", "--from", h.dir + "/broken.tar.gz", "--json")
        #expect(failed.status == 1, "\(failed.message)")
        let rows = try #require((try json(failed) as? [String: Any])?["tenants"] as? [[String: Any]])
        #expect(rows.map { $0["outcome"] as? String } == ["rolled-back", "not-run", "not-run", "not-run"], "\(rows)")
        var now = try apps(h)
        #expect(now["cileunyi-kulon"]?["state"] as? String == "rolled-back" && now["cileunyi-kulon"]?["release"] as? String == "2409.0.0")
        for (_, slug, _) in Self.villages.dropFirst() { #expect(now[slug]?["state"] as? String == "ok" && now[slug]?["release"] as? String == "2409.0.0") }
        #expect(try h.get(Self.host("cileunyi-kulon")).status == 200)
        #expect(try query(h, "32.04.08.2001", "SELECT v FROM desa_probe") == "cileunyi-kulon")
        #expect(try query(h, "32.04.08.2001", "SELECT COUNT(*) FROM migrasi WHERE versi_database = '2024100101'") == "0")
        let health = try h.desactl("health", "cileunyi-kulon", "--now")
        #expect(health.stdout.contains("rolled back"), "\(health.stdout)")

        // A village already down is skipped; a run killed half-way is resumed.
        #expect(rename(pub4 + "/index.php", pub4 + "/index.php.off") == 0)
        let gh = h.dir + "/gh/OpenSID-2410.0.0"
        try FileManager.default.createDirectory(atPath: h.dir + "/gh", withIntermediateDirectories: true)
        #expect(try h.runner.run(["/bin/cp", "-a", v2410, gh]).ok)
        try pack(h, gh, top: "OpenSID-2410.0.0", to: h.dir + "/github-2410.tar.gz")
        #expect(try h.desactl("app", "release", "add", "opensid", h.dir + "/github-2410.tar.gz").ok)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = Array(SandboxHarness.asOperator.dropFirst()) + [Support.desactl, "--config", h.configPath, "app", "upgrade", "opensid", "--all", "--to", "2410.0.0"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        var caught = false
        for _ in 0..<600 where p.isRunning {
            if try apps(h).values.contains(where: { $0["state"] as? String == "upgrading" }) { kill(p.processIdentifier, SIGKILL); caught = true; break }
            usleep(50_000)
        }
        p.waitUntilExit()
        #expect(caught, "the run ended before it could be killed")
        let resumed = try h.desactl("app", "upgrade", "opensid", "--resume", "--json")
        #expect(resumed.status == 1, "\(resumed.message)")
        let after = try #require((try json(resumed) as? [String: Any])?["tenants"] as? [[String: Any]])
        let cinunuk = try #require(after.first { $0["slug"] as? String == "cinunuk" })
        #expect(cinunuk["outcome"] as? String == "skipped" && (cinunuk["reason"] as? String ?? "").contains("failing before"), "\(cinunuk)")
        #expect(rename(pub4 + "/index.php.off", pub4 + "/index.php") == 0)
        let last = try h.desactl("app", "upgrade", "opensid", "--resume")
        #expect(last.ok, "\(last.message)")

        // v2410 everywhere: migrated, serving, with each village's own rows and uploads.
        now = try apps(h)
        for (code, slug, _) in Self.villages {
            #expect(now[slug]?["state"] as? String == "ok" && now[slug]?["release"] as? String == "2410.0.0", "\(slug): \(now[slug] ?? [:])")
            #expect(try query(h, code, "SELECT COUNT(*) FROM migrasi WHERE versi_database = '2024100101'") == "1", "\(slug) is not migrated")
            #expect(try query(h, code, "SELECT v FROM desa_probe") == slug)
            #expect(AtomicFiles.read(c.webRoot + "/" + slug + "/public/desa/upload/probe.txt") == slug + "\n")
            for path in ["/", "/siteman"] { #expect(try h.get(Self.host(slug), path).status == 200, "\(slug)\(path)") }
            #expect(!FileManager.default.fileExists(atPath: c.upkeepDir + "/" + slug), "\(slug) still answers 503")
        }
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: pub1 + "/.release") == c.releaseDir + "/opensid/2410.0.0")
        // Denied probes of a village's secrets are in its access log.
        #expect(try h.get(Self.host("cimekar"), "/desa/app_key").status == 403)
        usleep(200_000)
        #expect((AtomicFiles.read(c.tenantLogRoot + "/cimekar/access.log") ?? "").contains("\"GET /desa/app_key HTTP/1.1\" 403"))

        // The admin logs in, and OpenSID's incremental backup, started as the admin starts it
        // (a job that Symfony Process runs from the web request), finishes.
        _ = try query(h, "32.04.08.2001", "UPDATE config SET nama_desa = 'Cileunyi Kulon', kode_desa = '3204082001', nama_kecamatan = 'Cileunyi', kode_kecamatan = '320408', nama_kabupaten = 'Bandung', kode_kabupaten = '3204', nama_propinsi = 'Jawa Barat', kode_propinsi = '32'")
        let t = OpenSIDInstallTests()
        let jar = h.dir + "/cookies"
        _ = try t.request(h, "/siteman", cookies: jar)
        func token() -> String { (AtomicFiles.read(jar) ?? "").split(separator: "\n").first { $0.contains("sidcsrf") }.map { String($0.split(separator: "\t").last ?? "") } ?? "" }
        let (_, login, _) = try t.request(h, "/siteman/auth", cookies: jar, form: ["sidcsrf": token(), "username": "admin", "password": password])
        #expect(!(login["location"] ?? "/siteman").hasSuffix("/siteman"), "login failed: \(login)")
        let (_, _, started) = try t.request(h, "/database/inkremental_job", cookies: jar, form: ["sidcsrf": token(), "lokasi": "null"])
        #expect(started.contains("sedang berlangsung"), "\(started.prefix(300))")
        var status = ""
        for _ in 0..<60 where status != "1" {
            status = try query(h, "32.04.08.2001", "SELECT status FROM log_backup ORDER BY id DESC LIMIT 1")
            if status != "1" { usleep(500_000) }
        }
        #expect(status == "1", "OpenSID's incremental backup did not finish (status \(status))")

        // Old releases go when no village runs them: the newest (keep_releases = 1, the
        // broken 2410.0.1 here) and the one the villages run stay.
        try h.set("apps", ["keep_releases": "1"])
        let pruned = try h.desactl("app", "release", "prune")
        #expect(pruned.ok && pruned.stdout.contains("removed opensid/2409.0.0") && !pruned.stdout.contains("removed opensid/2410"), "\(pruned.message)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: c.releaseDir + "/opensid").sorted() == ["2410.0.0", "2410.0.1"])
    }
}
