import Foundation
import Testing
@testable import Provisioner

/// `desactl app install opensid` with the real release, a real mariadbd, nginx and the
/// tenant's own php-fpm pool: the site comes up ready, the operator logs in, nothing leaks,
/// the installer is never offered, and a rotated database password changes nothing visible.
@Suite("OpenSID installed into a tenant, with its database", .serialized)
struct OpenSIDInstallTests {
    static let host = "cileunyi-kulon.bandungkab.go.id"

    /// A browser's request: OpenSID records the Referer of each login.
    func request(_ h: SandboxHarness, _ path: String, cookies: String? = nil, form: [String: String]? = nil) throws -> (Int, [String: String], String) {
        var argv = ["/usr/bin/curl", "-sS", "-o", "-", "-D", "-", "--max-time", "60", "-H", "Host: \(Self.host)",
                    "-H", "Referer: http://\(Self.host)/siteman", "-A", "Mozilla/5.0 (desa test)"]
        if let cookies { argv += ["-b", cookies, "-c", cookies] }
        if let form { for (k, v) in form.sorted(by: { $0.key < $1.key }) { argv += ["--data-urlencode", "\(k)=\(v)"] } }
        let r = try h.runner.run(argv + ["http://127.0.0.1:\(h.port)\(path)"])
        try #require(r.ok, "curl \(path): \(r.message)")
        // Headers of the last response, then its body.
        let parts = r.stdout.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? "", body = parts.dropFirst().joined(separator: "\r\n\r\n")
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in head.split(separator: "\r\n").dropFirst() {
            if let c = line.firstIndex(of: ":") { headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces) }
        }
        return (status, headers, body)
    }

    @Test("app install opensid: home page and every same-host asset 200, the admin logs in, no leak, no installer, rotation is invisible",
          .enabled(if: OpenSIDTemplateTests.haveRelease, OpenSIDTemplateTests.missing))
    func installAndUse() throws {
        let h = try SandboxHarness("osidinst", mariadb: true)
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.08.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        let pwFile = h.dir + "/admin-password"
        let password = "Desa-\(UInt32.random(in: 100_000...999_999))-Kulon"
        try password.write(toFile: pwFile, atomically: true, encoding: .utf8)
        let installed = try h.desactl("app", "install", "opensid", "cileunyi-kulon", "--from", OpenSIDTemplateTests.tarball,
                                      "--admin-password-file", pwFile)
        try #require(installed.ok, "\(installed.stdout) \(installed.stderr)")
        #expect(installed.stdout.contains("OpenSID is installed") && !installed.stdout.contains(password))
        #expect(installed.stdout.contains("PHP 7.4.0 to 8.2.0"), "the PHP version note is missing: \(installed.stdout)")

        // The home page and every same-host CSS, JS and image on it.
        let home = try h.get(Self.host)
        #expect(home.status == 200)
        // OpenSID's own markup leaves a quote out here and there (`src="...png?v.. alt="`).
        let urls = OpenSIDTemplateTests.sameHostURLs(in: home.body).map { String($0.split(separator: " ").first ?? "") }.filter { p in
            [".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".woff", ".woff2", ".ttf"].contains { p.split(separator: "?").first?.hasSuffix($0) == true }
        }
        #expect(urls.count >= 10, "the home page references only \(urls.count) assets")
        var broken: [String] = []
        for u in urls where try h.get(Self.host, u).status != 200 { broken.append(u) }
        #expect(broken.isEmpty, "assets that do not answer 200: \(broken)")

        // The operator logs in with the password given; a wrong one is refused.
        let jar = h.dir + "/cookies"
        let (siteman, _, form) = try request(h, "/siteman", cookies: jar)
        #expect(siteman == 200 && form.contains("name=\"password\""))
        let token = (AtomicFiles.read(jar) ?? "").split(separator: "\n").first { $0.contains("sidcsrf") }.map { String($0.split(separator: "\t").last ?? "") } ?? ""
        let wrongJar = h.dir + "/cookies-wrong"
        _ = try request(h, "/siteman", cookies: wrongJar)
        let wrongToken = (AtomicFiles.read(wrongJar) ?? "").split(separator: "\n").first { $0.contains("sidcsrf") }.map { String($0.split(separator: "\t").last ?? "") } ?? ""
        let (_, wrongHeaders, _) = try request(h, "/siteman/auth", cookies: wrongJar, form: ["sidcsrf": wrongToken, "username": "admin", "password": "sid304"])
        #expect(wrongHeaders["location"]?.hasSuffix("/siteman") == true, "the default password was accepted: \(wrongHeaders)")
        let (_, loginHeaders, _) = try request(h, "/siteman/auth", cookies: jar, form: ["sidcsrf": token, "username": "admin", "password": password])
        let landing = loginHeaders["location"] ?? ""
        #expect(!landing.isEmpty && !landing.hasSuffix("/siteman"), "login did not succeed: \(loginHeaders)")
        // A new village's admin lands on the village's identity form, to fill in first.
        let (inside, _, page) = try request(h, "/identitas_desa", cookies: jar)
        #expect(inside == 200 && page.contains("logout"), "the admin's page after login: HTTP \(inside)")
        let (outside, outsideHeaders, _) = try request(h, "/identitas_desa")
        #expect(outside >= 300 && outside < 400 && outsideHeaders["location"]?.hasSuffix("/siteman") == true, "without logging in: HTTP \(outside)")

        // The installer is never offered.
        for path in ["/install", "/index.php/install", "/install/user", "/index.php/install/database"] {
            let (st, hd, body) = try request(h, path)
            #expect(!body.contains("database_hostname") && !body.contains("confirm_password"), "\(path) offers the installer")
            #expect(st == 404 || (st >= 300 && st < 400 && !(hd["location"] ?? "").hasSuffix("/install")), "\(path): HTTP \(st)")
        }

        // What the installation wrote and OpenSID's own leaks answer 403 or 404.
        for path in ["/desa/app_key", "/desa/config/database.php", "/desa/config/config.php", "/.my.cnf", "/../.my.cnf",
                     "/storage/logs/", "/composer.json", "/catatan_rilis.md", "/README.md", "/htaccess.txt", "/artisan",
                     "/backup_inkremental/", "/desa/cache/", "/desa/upload/dokumen/"] {
            let st = try h.get(Self.host, path).status
            #expect([400, 403, 404].contains(st), "\(path) answers \(st)")
        }
        let logs = try FileManager.default.contentsOfDirectory(atPath: h.dir + "/srv/cileunyi-kulon/public/storage/logs").filter { $0.hasSuffix(".php") }
        for l in logs { #expect([403, 404].contains(try h.get(Self.host, "/storage/logs/" + l).status), "\(l) is served") }

        // A script dropped where uploads go is never run; the shared code cannot be written.
        let users = try h.users()
        let user = try #require(users.first).name
        try OpenSIDTemplateTests().plant(["desa/upload/x.php": OpenSIDTemplateTests.script],
                                         in: h.dir + "/srv/cileunyi-kulon/public", as: user, h)
        #expect(!(try h.get(Self.host, "/desa/upload/x.php").body.contains("RAN-AS-PHP")), "/desa/upload/x.php ran")
        #expect(!(try h.runner.run(["/usr/sbin/runuser", "-u", user, "--", "/usr/bin/touch", h.dir + "/srv/cileunyi-kulon/public/assets/x.php"]).ok),
                "the village can write the shared code")

        // A new database password: the old one stops working, OpenSID does not notice.
        let before = try #require(DatabaseCredentials.read(home: h.dir + "/srv/cileunyi-kulon"))
        #expect(try h.desactl("db", "rotate-password", "cileunyi-kulon").ok)
        let after = try #require(DatabaseCredentials.read(home: h.dir + "/srv/cileunyi-kulon"))
        #expect(before.password != after.password)
        #expect(try h.get(Self.host).status == 200)
        let (still, _, _) = try request(h, "/identitas_desa", cookies: jar)
        #expect(still == 200)
        let m = try h.config().mariadb
        #expect(throws: DesaError.self) {
            _ = try MariaDBConnection(address: m.address, user: before.user, password: before.password, database: before.database)
        }
    }
}
