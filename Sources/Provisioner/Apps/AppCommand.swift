import ArgumentParser
import Foundation

public struct AppCommand: ParsableCommand {

    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "app",
        abstract: "Applications installed into a tenant's web root.",
        subcommands: [Install.self]
    )

    public struct Install: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Install OpenSID from its release tarball into a tenant, ready for the village's operator to log in.",
            discussion: """
            The tenant gets the opensid template and a database (if it has none). The release is
            unpacked by the tenant's own user; OpenSID's database settings read the tenant's own
            file .my.cnf, so its web installer is never offered; OpenSID's first run fills the database
            before the site goes public; the admin's password is printed once (or read from
            --admin-password-file). Needs mariadb.enabled = true and an empty web root.
            """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The application: opensid.") var app: String
        @Argument(help: "Slug or village code.") var tenant: String
        @Option(name: .customLong("from"), help: "The release tarball, e.g. opensid-v2410.0.0.tar.gz.") var tarball: String
        @Option(help: "A file holding the admin's password (OpenSID's rule: 8 to 20 characters, a digit, a lower- and an uppercase letter, a symbol); without it one is made and printed once.") var adminPasswordFile: String?
        @Flag(help: "Print JSON (with the password when desactl made it).") var json = false

        public func validate() throws {
            guard app == "opensid" else { throw ValidationError("the only application is opensid (got \(app))") }
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
                do { r = try e.installOpenSID(tenant, tarball: tarball, adminPassword: password) } catch let err as DesaError where err.kind == .notFound {
                    // An unknown tenant is refused before the operation starts: audited here.
                    e.record(op: "app install", target: tenant, outcome: "rejected", detail: err.message)
                    throw err
                }
                try CLI.report(r, json: json)
            }
        }
    }
}
