import Foundation
import Testing
@testable import Provisioner

/// The `opensid` site template against the real OpenSID release, unpacked into a tenant's
/// web root by the tenant's own user, served by real nginx and php-fpm. What OpenSID's own
/// `.htaccess` files deny must be denied here too, and what a village's site needs (themes,
/// assets, the front controller) must work. The release is not part of this repository
/// (see /work/shared/apps/SOURCE.md); without it the tests are skipped.
@Suite("The opensid site template with the real OpenSID release", .serialized)
struct OpenSIDTemplateTests {
    static let tarball = ProcessInfo.processInfo.environment["DESA_OPENSID_TARBALL"]
        ?? "/work/shared/apps/opensid-v2410.0.0.tar.gz"
    static var haveRelease: Bool { FileManager.default.isReadableFile(atPath: tarball) }
    static let missing: Comment = "the OpenSID release is missing at \(tarball) (see /work/shared/apps/SOURCE.md; DESA_OPENSID_TARBALL moves it)"

    /// The release unpacked once per test run (about 1 s, 130 MB), world-readable so each
    /// tenant's user can copy it; removed when the test process exits.
    static let unpacked: Result<String, DesaError> = {
        let dir = "/var/tmp/desa-opensid-\(getpid())"
        let runner = SystemProcessRunner()
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o755])
            let r = try runner.run(["/bin/tar", "-xzf", tarball, "-C", dir, "--no-same-owner", "--no-same-permissions"])
            guard r.ok else { return .failure(DesaError.system("tar -xzf \(tarball): \(r.message)")) }
            // The tarball's modes (0664/0775) stay; make sure others can read and traverse.
            _ = try runner.run(["/bin/chmod", "-R", "a+rX", dir])
            atexit { _ = try? FileManager.default.removeItem(atPath: "/var/tmp/desa-opensid-\(getpid())") }
            return .success(dir)
        } catch {
            return .failure(DesaError.system("unpacking \(tarball): \(error)"))
        }
    }()

    static let host = "cileunyi-kulon.bandungkab.go.id"

    /// A sandbox with one tenant on the `opensid` template whose web root holds the release,
    /// copied by the tenant's own user.
    func tenantWithRelease(_ name: String) throws -> (SandboxHarness, public: String, user: String) {
        let release = try Self.unpacked.get()
        let h = try SandboxHarness(name)
        let r = try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi",
                              "--template", "opensid")
        try #require(r.ok, "\(r.message)")
        let user = h.prefix + "3204052001", pub = try h.config().webRoot + "/cileunyi-kulon/public"
        try copy(release, to: pub, as: user, h)
        return (h, pub, user)
    }

    /// Writes `files` (relative path to content) into the web root as the tenant's user:
    /// root writes only in its own staging directory, so nothing root does in the home can
    /// follow a link the tenant placed.
    func plant(_ files: [String: String], in pub: String, as user: String, _ h: SandboxHarness) throws {
        let stage = h.dir + "/plant-\(UUID().uuidString.prefix(8))"
        for (path, content) in files {
            let file = stage + "/" + path
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try content.write(toFile: file, atomically: false, encoding: .utf8)
            chmod(file, 0o644)
        }
        chmod(h.dir, 0o755)
        try copy(stage, to: pub, as: user, h)
    }

    func copy(_ src: String, to pub: String, as user: String, _ h: SandboxHarness) throws {
        let cp = try h.runner.run(["/usr/sbin/runuser", "-u", user, "--", "/bin/cp", "-R", "--preserve=mode,timestamps",
                                   src + "/.", pub + "/"])
        try #require(cp.ok, "cp \(src) as \(user): \(cp.message)")
    }

    /// Files OpenSID creates when it is installed and used, with markers that must never
    /// reach a visitor.
    static let secrets: [String: String] = [
        "desa/app_key": "base64:SECRET-app-key",
        "desa/config/database.php": "<?php $db['default']['password'] = 'SECRET-db-password';",
        "desa/config/config.php": "<?php $config['SECRET'] = 1;",
        "desa/upload/dokumen/x.pdf": "%PDF-1.4 SECRET-resident-document",
        "desa/upload/dokumen/ktp.jpg": "SECRET-resident-id-card",
        "desa/arsip/surat.rtf": "{\\rtf1 SECRET-archived-letter}",
        "desa/cache/x": "SECRET-cache",
        "desa/logs/log.php": "SECRET-old-log",
        "desa/upload/keuangan/siskeudes.zip": "SECRET-finance-zip",
        "backup_inkremental/x.zip": "SECRET-incremental-backup",
        "backup_inkremental/db.sql": "SECRET-incremental-backup-sql",
        "x.zip": "SECRET-zip",
        "backup.rar": "SECRET-rar",
        "storage/logs/laravel.log": "SECRET-storage-log",
        "storage/framework/views/0123.php": "SECRET-compiled-view",
        "desa/.env": "SECRET-dotenv",
        "mitra.json": "SECRET-mitra",
    ]

    /// Where a tenant's uploaded script must not run. The marker is split in the source,
    /// so it appears in a body only if PHP executed the file.
    static let scripts = [
        "x.php", "desa/upload/x.php", "desa/upload/artikel/x.php", "desa/themes/x.php", "assets/x.php",
        "assets/files/x.php", "assets/kelola_file/x.php", "app/x.php", "resources/x.php",
        "vendor/themes/natra/x.php", "storage/x.php", "x.phtml", "desa/upload/x.php5", "desa/upload/x.phar",
    ]
    static let script = "<?php echo 'RAN-' . 'AS-PHP';\n"

    @Test("what OpenSID's .htaccess files deny is denied; no script but its entry points runs; themes, assets and index.php work",
          .enabled(if: haveRelease, missing))
    func rules() throws {
        let (h, pub, user) = try tenantWithRelease("opensid")
        defer { h.destroy() }

        // The front controller runs, routes by PATH_INFO (/index.php/<route>, OpenSID's
        // links without a .htaccess) and by clean URLs. Without a database configured
        // OpenSID sends every page to its installer, whose page and assets then work.
        for path in ["/", "/index.php", "/index.php/first/artikel/1", "/first/artikel/1", "/index.php?x=1"] {
            let r = try h.get(Self.host, path)
            #expect(r.headers["set-cookie"] != nil, "\(path) answered \(r.status) without running PHP")
            #expect(r.status != 403 && r.status != 404 && r.status != 502, "\(path) answered \(r.status)")
            #expect(!r.body.contains("<?php") && !r.body.contains("define('ENVIRONMENT'"), "\(path) served PHP source")
            #expect(r.headers["x-powered-by"] == nil, "expose_php is off")
        }
        // Off port 80 the port stays in OpenSID's URLs (HTTP_HOST carries it).
        #expect(try h.get(Self.host, "/").headers["location"] == "http://\(Self.host):\(h.port)/index.php/install")
        let installer = try h.get(Self.host, "/index.php/install")
        #expect(installer.status == 200 && installer.body.contains("<title>Pemasangan - OpenSID</title>"), "\(installer.status)")
        let urls = Self.sameHostURLs(in: installer.body)
        #expect(urls.count >= 3)
        for url in urls {
            let r = try h.get(Self.host, url)
            #expect(r.status == 200, "\(url) on the installer page answered \(r.status)")
        }
        // The file manager's scripts run (and refuse without OpenSID's session key).
        let fm = try h.get(Self.host, "/assets/kelola_file/dialog.php")
        #expect(fm.status == 200 && fm.body.contains("Access denied"), "dialog.php answered \(fm.status): \(fm.body.prefix(200))")

        // What an installed OpenSID holds, and scripts a tenant (or an upload) drops.
        var files = Self.secrets
        for s in Self.scripts { files[s] = Self.script }
        files["desa/upload/artikel/foto.jpg"] = "an article photo"
        files["desa/upload/user_pict/kades.png"] = "a portrait"
        try plant(files, in: pub, as: user, h)

        // Denied: the village's secrets and residents' data...
        for path in Self.secrets.keys.sorted() {
            let r = try h.get(Self.host, "/" + path)
            #expect(r.status == 403 || r.status == 404, "/\(path) answered \(r.status)")
            #expect(!r.body.contains("SECRET"), "/\(path) leaked")
        }
        // ...the release's own code, configuration, notes and tooling, which exist in it.
        let releaseFiles = [
            "composer.json", "composer.lock", "catatan_rilis.md", "README.md", "htaccess.txt", "artisan",
            "assets/.htaccess", "backup_inkremental/.gitignore", "backup_inkremental/index.html",
            "donjo-app/config/config.php", "donjo-app/config/installer.php", "app/Libraries/Sistem.php",
            "vendor/autoload.php", "vendor/composer/installed.json", "vendor/codeigniter/framework/system/core/CodeIgniter.php",
            "vendor/themes/natra/composer.json", "vendor/themes/natra/template.php", "vendor/themes/esensi/partials/article.php",
            "assets/kelola_file/config/config.php", "assets/kelola_file/include/utils.php", "assets/kelola_file/index.php",
            "assets/js/tinymce-651/composer.json", "assets/js/tinymce-651/CHANGELOG.md",
            "storage/app/vendor/cocur/slugify/src/Slugify.php",
            // Tricks: an encoded traversal out of the themes, a trailing dot, doubled slashes.
            "vendor/themes/..%2F..%2Fdesa/app_key", "vendor/themes/natra/..%2F..%2F..%2Fcomposer.json", "index.php.", "desa//app_key",
        ]
        for path in releaseFiles {
            let bare = path.removingPercentEncoding ?? path
            #expect(path.contains("%") || path.contains("//") || path.hasSuffix(".") || path.hasSuffix("app_key")
                    || FileManager.default.fileExists(atPath: pub + "/" + bare), "\(path) is not in the release: the check means nothing")
            let r = try h.get(Self.host, "/" + path)
            #expect(r.status == 403 || r.status == 404, "/\(path) answered \(r.status)")
            #expect(!r.body.contains("<?php") && !r.body.contains("\"require\"") && !r.body.contains("SECRET"), "/\(path) served its source")
        }

        // Blade views are neither run nor served as source.
        let blade = "resources/views/admin/anjungan_menu/index.blade.php"
        #expect(FileManager.default.fileExists(atPath: pub + "/" + blade))
        let b = try h.get(Self.host, "/" + blade)
        #expect(b.status == 403 || b.status == 404, "/\(blade) answered \(b.status)")
        #expect(!b.body.contains("@extends") && !b.body.contains("{{"), "blade source served")

        // A script dropped anywhere outside the entry points neither runs nor is shown.
        for path in Self.scripts {
            let r = try h.get(Self.host, "/" + path)
            #expect(!r.body.contains("RAN-AS-PHP"), "/\(path) was executed")
            #expect(!r.body.contains("'RAN-'"), "/\(path) was served as source")
            #expect(r.status == 403 || r.status == 404, "/\(path) answered \(r.status)")
        }

        // Served: the themes' files (20 of 64 on the home page live there), the assets,
        // the village's uploaded pictures.
        let served = [
            ("vendor/themes/natra/assets/css/animate.css", "text/css"),
            ("vendor/themes/esensi/assets/css/style.min.css", "text/css"),
            ("assets/bootstrap/css/bootstrap.min.css", "text/css"),
            ("assets/front/js/jquery.min.js", "javascript"),
            ("assets/js/tinymce-651/tinymce.min.js", "javascript"),
            ("assets/kelola_file/plugin.min.js", "javascript"),
            ("favicon.ico", "image/"),
            ("robots.txt", "text/plain"),
            ("desa/upload/artikel/foto.jpg", "image/jpeg"),
            ("desa/upload/user_pict/kades.png", "image/png"),
        ]
        for (path, type) in served {
            #expect(FileManager.default.fileExists(atPath: pub + "/" + path), "\(path) is not in the release")
            let r = try h.get(Self.host, "/" + path)
            #expect(r.status == 200, "/\(path) answered \(r.status)")
            #expect(r.headers["content-type"]?.contains(type) == true, "/\(path): \(r.headers["content-type"] ?? "no type")")
        }
        let css = try h.get(Self.host, "/vendor/themes/natra/assets/css/animate.css")
        #expect(css.body.utf8.count > 1000 && css.body.contains("@keyframes"))

        // Every static file of the themes and assets (CSS, scripts, images, fonts) is
        // served, except what the rules above deny.
        var checked = 0
        for tree in ["vendor/themes", "assets/css", "assets/bootstrap", "assets/front", "assets/fonts", "assets/installer"] {
            let files = FileManager.default.enumerator(atPath: pub + "/" + tree)!.compactMap { $0 as? String }
            for rel in files.sorted() {
                let path = tree + "/" + rel, name = (rel as NSString).lastPathComponent
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: pub + "/" + path, isDirectory: &isDir), !isDir.boolValue,
                      !Self.deniedOnPurpose(path, name) else { continue }
                let r = try h.get(Self.host, "/" + path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)!)
                #expect(r.status == 200, "/\(path) answered \(r.status)")
                checked += 1
            }
        }
        #expect(checked > 300, "only \(checked) files checked")

        #expect(try h.nginxTest().ok)
    }

    /// Files under the served trees that the rules deny on purpose: dotfiles, scripts,
    /// composer manifests, notes, leftovers, the file manager's config.
    static func deniedOnPurpose(_ path: String, _ name: String) -> Bool {
        name.hasPrefix(".") || name.hasPrefix("composer.") || path.hasPrefix("assets/kelola_file/config/")
            || [".php", ".phtml", ".md", ".bak"].contains { name.hasSuffix($0) }
    }

    /// Paths of the `href` and `src` URLs on `page` that point at `host` itself.
    static func sameHostURLs(in page: String) -> [String] {
        let prefix = "http://\(host)"
        var out = Set<String>()
        for attr in ["href=\"", "src=\""] {
            for whole in page.components(separatedBy: attr + prefix).dropFirst() {
                var part = Substring(whole)
                // The sandbox's port, which OpenSID now keeps in its URLs.
                if part.hasPrefix(":") { part = part.dropFirst().drop(while: { $0.isNumber }) }
                if let end = part.firstIndex(of: "\"") { out.insert(String(part[..<end])) }
            }
        }
        return out.sorted()
    }

    @Test("OpenSID's background jobs start under the pool's open_basedir (Symfony Process opens /dev/null)",
          .enabled(if: haveRelease, missing))
    func backgroundJob() throws {
        // What donjo-app/controllers/Database.php does for an incremental backup, with a
        // child that leaves a mark. The opensid template runs no such script, so this one
        // is served through the default template, on the same pool.
        let probe = """
        <?php
        require __DIR__ . '/vendor/autoload.php';
        $p = new Symfony\\Component\\Process\\Process(['php', '-r', 'file_put_contents($argv[1], posix_getuid());', __DIR__ . '/job-ran']);
        $p->disableOutput()->setOptions(['create_new_console' => true]);
        $p->start();
        $p->wait();
        echo 'exit=', $p->getExitCode(), "\\n";
        """
        let (h, pub, user) = try tenantWithRelease("osidjob")
        defer { h.destroy() }
        try plant(["job-probe.php": probe], in: pub, as: user, h)
        #expect(try h.desactl("tenant", "set", "cileunyi-kulon", "--template", "default").ok)
        let r = try h.get(Self.host, "/job-probe.php")
        #expect(r.status == 200 && r.body.contains("exit=0"), "\(r.status): \(r.body.prefix(600))")
        #expect(Support.read(pub + "/job-ran") == String(getpwnam(user)!.pointee.pw_uid), "the job ran as the tenant")
    }
}
