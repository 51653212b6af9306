import ArgumentParser
import Foundation
import Provisioner

struct AppCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "app",
        abstract: "Applications installed into a tenant's web root.",
        subcommands: [Install.self]
    )

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install OpenSID from its release tarball into a tenant, ready for the village's operator to log in.",
            discussion: """
            The tenant gets the opensid template and a database (if it has none). The release is
            unpacked by the tenant's own user; OpenSID's database settings read the tenant's
            .my.cnf, so its web installer is never offered; OpenSID's first run fills the database
            before the site goes public; the admin's password is printed once (or read from
            --admin-password-file). Needs mariadb.enabled = true and an empty web root.
            """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The application: opensid.") var app: String
        @Argument(help: "Slug or village code.") var tenant: String
        @Option(name: .customLong("from"), help: "The release tarball, e.g. opensid-v2410.0.0.tar.gz.") var tarball: String
        @Option(help: "A file holding the admin's password (OpenSID's rule: 8 to 20 characters, a digit, a lower- and an uppercase letter, a symbol); without it one is made and printed once.") var adminPasswordFile: String?
        @Flag(help: "Print JSON (with the password when desactl made it).") var json = false

        func validate() throws {
            guard app == "opensid" else { throw ValidationError("the only application is opensid (got \(app))") }
        }

        func run() throws {
            try desactl.run {
                let e = try global.engine(json: json)
                var password: String?
                if let f = adminPasswordFile {
                    guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { throw DesaError(.invalidInput, "cannot read \(f)") }
                    password = text.trimmingCharacters(in: .newlines)
                }
                let r: AppInstallReport
                do { r = try e.installOpenSID(tenant, tarball: tarball, adminPassword: password) } catch let err as DesaError {
                    e.record(op: "app install", target: tenant, outcome: err.kind == .invalidInput ? "rejected" : "error", detail: err.message)
                    throw err
                }
                if json {
                    printJSON(.object([("slug", .string(r.slug)), ("url", .string(r.url)), ("admin_user", .string(r.adminUser)),
                                       ("admin_password", .str(r.adminPassword)), ("tables", .int(r.tables)),
                                       ("seconds", .double(r.seconds)), ("notes", .array(r.notes.map { .string($0) }))]))
                    return
                }
                print("OpenSID is installed for \(r.slug) (\(r.tables) tables, \(String(format: "%.1f", r.seconds)) s).")
                print("Log in at \(r.url) as \(r.adminUser)" + (r.adminPassword.map { " with the password \($0)\n(shown once: desa keeps no copy; the village should change it)" } ?? " with the given password."))
                for n in r.notes { print("NOTE " + n) }
            }
        }
    }
}
