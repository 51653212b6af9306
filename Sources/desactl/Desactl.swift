import ArgumentParser
import Foundation
import Logging
import Provisioner

@main
struct Desactl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "desactl",
        abstract: "Host every village of a regency: tenants, nginx, PHP-FPM, users, HTTPS certificates, MariaDB databases, OpenSID.",
        usage: "desactl [--config PATH] <subcommand>",
        discussion: """
        The config comes from --config, else $DESA_CONFIG, else /etc/desa/desa.toml.
        Mutating commands take --dry-run (print the plan, change nothing) and --json.
        """,
        version: DesaVersion.string,
        subcommands: [InitCommand.self, SandboxCommand.self, TenantCommand.self, DatabaseCommand.self, AppCommand.self, CertCommand.self, HealthCommand.self, StatusCommand.self, JobCommand.self, QuotaCommand.self, BackupCommand.self, PortalCommand.self, PlanCommand.self, ApplyCommand.self, ConfigCommand.self]
    )

    /// `desactl --config PATH <command> ...`: a --config before the command names applies
    /// to every command, so it is handed down through DESA_CONFIG.
    static func main() {
        // What desa makes has the modes it sets, whatever the operator's umask (under 077 an
        // installed site's files came out 0600 and every page was 403); it reaches every
        // program desa starts too. Secrets are made 0600 explicitly.
        umask(0o022)
        var args = Array(CommandLine.arguments.dropFirst())
        var i = 0
        while i < args.count, args[i].hasPrefix("-") {
            if args[i] == "--config", i + 1 < args.count {
                setenv("DESA_CONFIG", args[i + 1], 1)
                args.removeSubrange(i...(i + 1))
            } else if args[i].hasPrefix("--config=") {
                setenv("DESA_CONFIG", String(args[i].dropFirst("--config=".count)), 1)
                args.remove(at: i)
            } else {
                i += 1
            }
        }
        main(args)
    }
}
