import Foundation
import Testing
@testable import Provisioner

/// A capability section that Config.swift knows nothing about: registering it is all it
/// takes for `[example]` to decode, validate, encode and compare.
struct ExampleSettings: ConfigSection {
    static let name = "example"
    @Setting("greeting", "what to say") var greeting = "halo"
    @Setting("retries", "how many times to try") var retries = 3

    init() {}
    init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    func validate(in config: Config) throws {
        if retries < 0 { throw DesaError(.config, "example.retries must not be negative (got \(retries))") }
    }
}

@Suite("Config")
struct ConfigTests {
    static func refusal(_ text: String) -> DesaError? {
        #expect(throws: DesaError.self, "accepted: \(text)") { try Config.parse(text, source: "desa.toml") }
    }

    @Test("a sandbox config survives writing and reading back")
    func sandboxRoundTrip() throws {
        var o = Sandbox.Options(dir: "/var/tmp/desa-x")
        o.templates = Support.templates
        let c = Sandbox.config(for: o)
        let text = try Sandbox.toml(c, options: o)
        let parsed = try Config.parse(text)
        var expected = c
        expected.path = parsed.path
        #expect(parsed == expected)
        // Every key is written out: the sandbox never falls back to a production default.
        #expect(text.contains("sites_dir = \"/var/tmp/desa-x/nginx/sites\""))
        #expect(text.contains("service = \"\""))
        #expect(try parsed.toml() == c.toml())
    }

    @Test("a file without a key takes the defaults; an empty file is the production config")
    func defaults() throws {
        #expect(try Config.parse("") == Config())
        let c = try Config.parse("""
        [paths]
        state_dir = "/data/desa"
        [nginx]
        listen = "8080"
        """)
        #expect(c.mode == .production)
        #expect(c.nginx.listen == "8080")
        #expect(c.nginx.sitesDir == "/etc/nginx/desa")
        #expect(c.nginx.tenantErrorLogs == .tenant)
        // Derived defaults follow the state directory the file names.
        #expect(c.archiveDir == "/data/desa/archive")
        #expect(c.acmeRoot == "/data/desa/acme")
        #expect(c.uidMin == 200_000 && c.uidMax == 299_999)
        #expect(c.php.versions.keys.sorted() == ["8.2"])
        #expect(c.php.default == "8.2")
        // And the effective config, printed, reads back as the same config.
        #expect(try Config.parse(c.toml()) == c)
    }

    @Test("the short names and the sections' accessors read and write the sections")
    func flatNames() {
        var c = Config()
        c.nginx.sitesDir = "/x/sites"
        c.nginx.tenantErrorLogs = .shared
        c.nginx.serverNamesHashBucketSize = 256
        c.uidMin = 400_000
        #expect(c.nginx.sitesDir == "/x/sites")
        #expect(c.nginx.tenantErrorLogs == .shared)
        #expect(c.nginx.maxServerNameLength == 238)
        #expect(c.users.uidMin == 400_000)
        c.nginx.listen = "81"
        #expect(c.nginx.listen == "81")
        #expect(c != Config())
    }

    @Test("bad files are refused, naming the key", arguments: [
        // Unknown keys and sections, with the nearest known name.
        ("[nginx]\nsites_dri = \"/srv/x\"", "desa.toml: unknown key nginx.sites_dri (did you mean sites_dir?)"),
        ("[users]\nuid_mim = 300000", "desa.toml: unknown key users.uid_mim (did you mean uid_min?)"),
        ("mdoe = \"sandbox\"", "desa.toml: unknown key mdoe (did you mean mode?)"),
        ("[ngnix]\nlisten = \"80\"", "desa.toml: unknown section [ngnix] (did you mean [nginx]?)"),
        ("[pths]\nweb_root = \"/srv\"", "desa.toml: unknown section [pths] (did you mean [paths]?)"),
        ("[php.versions.\"8.2\"]\nbinary = \"/a\"\nmain_conf = \"/b\"\npool_dir = \"/c\"\nsocket_dir = \"/d\"\npid_file = \"/e\"\nservce = \"x\"",
         "desa.toml: unknown key php.versions.\"8.2\".servce (did you mean service?)"),
        // Wrong types.
        ("[users]\nuid_min = \"x\"", "desa.toml: users.uid_min must be an integer, not a string"),
        ("[nginx]\nlisten = 80", "desa.toml: nginx.listen must be a string, not an integer"),
        ("nginx = \"/etc/nginx\"", "desa.toml: nginx must be a table, not a string"),
        ("[php]\ndefault = 8.2", "desa.toml: php.default must be a string, not a number with a fraction"),
        ("[php.versions.\"8.2\"]\nbinary = \"/a\"", "desa.toml: php.versions.\"8.2\".main_conf is missing"),
        // Paths.
        ("[paths]\nweb_root = \"srv/desa\"", "desa.toml: paths.web_root \"srv/desa\" must be absolute"),
        ("[nginx]\nsites_dir = \"etc/nginx/desa\"", "desa.toml: nginx.sites_dir \"etc/nginx/desa\" must be absolute"),
        // Enumerations.
        ("mode = \"cloud\"", "desa.toml: mode must be sandbox or production (got \"cloud\")"),
        ("[nginx]\ntenant_error_logs = \"per-tenant\"", "desa.toml: nginx.tenant_error_logs must be tenant or shared (got \"per-tenant\")"),
        ("[nginx]\nserver_names_hash_bucket_size = 100", "desa.toml: nginx.server_names_hash_bucket_size must be 64, 128, 256 or 512 (got 100)"),
        // UID ranges that the system hands out itself.
        ("[users]\nuid_min = 500\nuid_max = 2000", "desa.toml: users.uid_min/uid_max must be a range above 999"),
        ("[users]\nuid_min = 50000\nuid_max = 70000", "desa.toml: users.uid_min/uid_max 50000-70000 overlaps 60001-60513"),
        ("[users]\nuid_min = 61184\nuid_max = 61200", "desa.toml: users.uid_min/uid_max 61184-61200 overlaps 61184-65519"),
        ("[users]\nuid_min = 65530\nuid_max = 65600", "desa.toml: users.uid_min/uid_max 65530-65600 overlaps 65534-65535"),
    ])
    func refused(text: String, message: String) {
        let e = Self.refusal(text)
        #expect(e?.kind == .config)
        #expect(e?.message.hasPrefix(message) == true, "got: \(e?.message ?? "")")
    }

    @Test("UID ranges clear of the system's are accepted", arguments: [(1000, 59_999), (60514, 61183), (65536, 99_999), (200_000, 299_999)])
    func clearRanges(min: Int, max: Int) throws {
        let c = try Config.parse("[users]\nuid_min = \(min)\nuid_max = \(max)")
        #expect(c.uidMin == min && c.uidMax == max)
    }

    @Test("bad values name the key", arguments: [
        ("[regency]\ncode = \"32\"", "malformed regency code"),
        ("[regency]\ndomain = \"bad domain\"", "\"bad domain\""),
        ("[regency]\ndomain = \"a;b.go.id\"", "invalid label"),
        ("[users]\nprefix = \"Bad\"", "user prefix"),
        ("[users]\nuid_min = 10", "uid_min/uid_max"),
        ("[paths]\nweb_root = \"/srv/$x\"", "must be absolute"),
        ("[nginx]\nprobe = \"localhost\"", "nginx.probe"),
        ("[php]\ndefault = \"7.4\"", "php.default"),
        ("[nginx]\nfastcgi_params = \"/etc/nginx/fastcgi_params;include /x\"", "nginx.fastcgi_params"),
        ("[nginx]\nservice = \"nginx; reboot\"", "nginx.service"),
        ("[users]\nweb_group = \"www data\"", "users.web_group"),
        ("[regency]\ndomain = \"\(String(repeating: "a", count: 60)).go.id\"", "regency.domain"),
        ("[php.versions.x]\nbinary = \"/a\"\nmain_conf = \"/b\"\npool_dir = \"/c\"\nsocket_dir = \"/d\"\npid_file = \"/e\"", "PHP version \"x\""),
        ("this is not toml", "line 1"),
    ])
    func badConfig(text: String, reason: String) {
        let e = Self.refusal(text)
        #expect(e?.message.contains(reason) == true, "got: \(e?.message ?? "")")
        #expect(e?.message.hasPrefix("desa.toml") == true)
    }

    @Test("PHP versions map to their own binaries and pool directories")
    func phpVersions() throws {
        let c = try Config.parse("""
        [php]
        default = "8.2"
        [php.versions."8.2"]
        binary = "/usr/sbin/php-fpm8.2"
        main_conf = "/etc/php/8.2/fpm/php-fpm.conf"
        pool_dir = "/etc/php/8.2/fpm/pool.d"
        socket_dir = "/run/php"
        pid_file = "/run/php/php8.2-fpm.pid"
        [php.versions."7.4"]
        binary = "/opt/php74/sbin/php-fpm"
        main_conf = "/opt/php74/etc/php-fpm.conf"
        pool_dir = "/opt/php74/etc/pool.d"
        socket_dir = "/run/php74"
        pid_file = "/run/php74/fpm.pid"
        """)
        #expect(try c.php.version("7.4").poolDir == "/opt/php74/etc/pool.d")
        #expect(try c.php.version("7.4").service == "php7.4-fpm")
        #expect(throws: DesaError.self) { try c.php.version("8.4") }
        #expect(try Config.parse(c.toml()) == c)
    }

    @Test("a registered section decodes, validates and is written without a change to Config")
    func registeredSection() throws {
        ConfigSections.register(ExampleSettings.self)
        #expect(ConfigSections.registered.contains { $0 == ExampleSettings.self })

        let c = try Config.parse("""
        [example]
        greeting = "say \\"halo\\" \\\\ selamat pagi ✓"
        """)
        #expect(c.section(ExampleSettings.self).greeting == "say \"halo\" \\ selamat pagi ✓")
        #expect(c.section(ExampleSettings.self).retries == 3)
        #expect(try Config.parse(c.toml()) == c)
        #expect(try c.toml().contains("[example]\ngreeting = "))

        // Absent: the defaults.
        #expect(try Config.parse("").section(ExampleSettings.self) == ExampleSettings())
        var d = Config()
        var s = ExampleSettings()
        s.retries = 5
        d.set(s)
        #expect(d.section(ExampleSettings.self).retries == 5)
        #expect(d != Config())

        let typo = Self.refusal("[example]\nretires = 2")
        #expect(typo?.message == "desa.toml: unknown key example.retires (did you mean retries?)")
        let negative = Self.refusal("[example]\nretries = -1")
        #expect(negative?.message == "desa.toml: example.retries must not be negative (got -1)")
        let type = Self.refusal("[example]\nretries = \"two\"")
        #expect(type?.message == "desa.toml: example.retries must be an integer, not a string")
    }

    @Test("the config path: --config, else $DESA_CONFIG, else /etc/desa/desa.toml")
    func resolvedPath() {
        #expect(Config.resolvedPath("/a.toml", environment: ["DESA_CONFIG": "/b.toml"]) == "/a.toml")
        #expect(Config.resolvedPath(nil, environment: ["DESA_CONFIG": "/b.toml"]) == "/b.toml")
        #expect(Config.resolvedPath(nil, environment: ["DESA_CONFIG": ""]) == "/etc/desa/desa.toml")
        #expect(Config.resolvedPath(nil, environment: [:]) == "/etc/desa/desa.toml")
    }

    @Test("desactl config check prints the effective config, or one line naming the key")
    func checkCommand() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("desa-config-check-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = SystemProcessRunner()

        try "mode = \"sandbox\"\n[nginx]\nlisten = \"8080\"\n".write(toFile: dir + "/good.toml", atomically: true, encoding: .utf8)
        let good = try runner.run([Support.desactl, "config", "check", "--config", dir + "/good.toml"])
        #expect(good.ok, "\(good.message)")
        let effective = try Config.parse(good.stdout)
        #expect(effective.mode == .sandbox && effective.nginx.listen == "8080" && effective.nginx.sitesDir == "/etc/nginx/desa")
        #expect(good.stdout.contains("#   files: not limited (quota.backend = \"none\")"), "\(good.stdout)")
        #expect(good.stdout.contains("#   memory and CPU: NOT LIMITED per tenant") && good.stdout.contains("a sandbox runs one php-fpm master for all tenants"), "\(good.stdout)")

        // The kernel backend on a filesystem without usrquota (this machine's has none): said plainly.
        try "mode = \"production\"\n[paths]\nweb_root = \"\(dir)/srv\"\n[quota]\nbackend = \"kernel\"\n".write(toFile: dir + "/kernel.toml", atomically: true, encoding: .utf8)
        let kernel = try runner.run([Support.desactl, "config", "check", "--config", dir + "/kernel.toml"])
        #expect(kernel.ok, "\(kernel.message)")
        #expect(kernel.stdout.contains("files: NOT ENFORCED: ") && kernel.stdout.contains("is not mounted with usrquota"), "\(kernel.stdout)")
        #expect(kernel.stdout.contains("processes, memory and CPU: each tenant's PHP in a php-fpm master of its own (desa-php8.2-fpm@.service), whose cgroup the kernel holds to its limits: default 100 processes (TasksMax=), 1GiB (MemoryMax="), "\(kernel.stdout)")
        // With one master for all, processes are limited per user by the master's LimitNPROC=.
        try "mode = \"production\"\n[paths]\nweb_root = \"\(dir)/srv\"\n[php]\nmasters = \"shared\"\n[quota]\nbackend = \"kernel\"\n".write(toFile: dir + "/shared.toml", atomically: true, encoding: .utf8)
        let shared = try runner.run([Support.desactl, "config", "check", "--config", dir + "/shared.toml"])
        #expect(shared.stdout.contains("processes: at most 100 per tenant (LimitNPROC= of php8.2-fpm.service, in desa's drop-in"), "\(shared.stdout)")
        #expect(shared.stdout.contains("memory and CPU: NOT LIMITED per tenant") && shared.stdout.contains("php.masters = \"shared\""), "\(shared.stdout)")

        try "[nginx]\nsites_dri = \"/srv/x\"\n".write(toFile: dir + "/bad.toml", atomically: true, encoding: .utf8)
        let bad = try runner.run([Support.desactl, "--config", dir + "/bad.toml", "config", "check"])
        #expect(bad.status == 1)
        #expect(bad.stdout.isEmpty)
        #expect(bad.stderr == "desactl: error: \(dir)/bad.toml: unknown key nginx.sites_dri (did you mean sites_dir?)\n")
    }

    @Test("every key is declared once: its documentation reaches config check, config reference and the README")
    func reference() throws {
        let reference = Config.reference()
        // Every key of every section, with its default and its line of documentation.
        #expect(reference.contains("sites_dir = \"/etc/nginx/desa\"    # where the tenants' server blocks go"), "\(reference)")
        #expect(reference.contains("[php.versions.\"8.2\"]"))
        #expect(reference.contains("binary = \"/usr/sbin/php-fpm8.2\"  # php-fpm's executable"))
        #expect(try Config.parse(reference) == Config(), "the reference is itself the default config")
        for section in [RegencySettings.self, PathSettings.self, UserSettings.self] as [any ConfigSection.Type] + ConfigSections.registered {
            for key in section.reference.filter({ $0.value != nil }).map(\.key) {
                #expect(reference.contains("\n\(key) = "), "\(section.name).\(key) is not documented")
            }
            #expect(section.reference.allSatisfy { !$0.doc.isEmpty }, "\(section.name) has a key without documentation")
        }
        // The README's config table is what desactl config reference prints (this process
        // may have registered test sections of its own, so the binary is asked).
        let printed = try SystemProcessRunner().run([Support.desactl, "config", "reference"])
        #expect(printed.ok && printed.stdout.hasPrefix("mode = \"production\""))
        let readme = Support.read(Support.packageRoot.path + "/README.md")
        #expect(readme.contains("```toml\n" + printed.stdout + "```"),
                "README.md's config table differs from `desactl config reference`; paste its output into the README")
    }
}
