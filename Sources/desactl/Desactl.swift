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
        subcommands: [SandboxCommand.self, TenantCommand.self, DatabaseCommand.self, AppCommand.self, CertCommand.self, HealthCommand.self, JobCommand.self, PlanCommand.self, ApplyCommand.self, ConfigCommand.self]
    )

    /// `desactl --config PATH <command> ...`: a --config before the command names applies
    /// to every command, so it is handed down through DESA_CONFIG.
    static func main() {
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

/// Flags every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Config file (default: $DESA_CONFIG or /etc/desa/desa.toml); may also come first: desactl --config PATH tenant list.", valueName: "PATH"))
    var config: String?

    @Flag(name: .shortAndLong, help: "Print each tenant's outcome, not just the summary.")
    var verbose = false

    var configPath: String { Config.resolvedPath(config) }

    func loadConfig() throws -> Config { try Config.load(path: configPath) }

    func logger() -> Logger {
        var l = Logger(label: "desactl") { _ in StderrLogHandler(program: "desactl") }
        l.logLevel = verbose ? .info : .notice
        return l
    }

    func engine(json: Bool = false) throws -> Engine {
        let e = try Engine(config: try loadConfig(), logger: logger(),
                           progress: json ? SilentProgress() : TerminalProgress.forStderr())
        #if DEBUG
        // Tests only: DESA_TEST_NOW moves the clock (renewals, retry backoff).
        if let t = try TimeSource.testOverride() { e.time = t }
        #endif
        return e
    }
}

/// Runs a command body; an error of any type becomes one clear line on stderr and the
/// exit status `ExitStatus.of` gives it.
func run(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        FileHandle.standardError.write(Data("desactl: error: \(Applier.message(error))\n".utf8))
        throw ExitCode(ExitStatus.of(error))
    }
}

func printJSON(_ j: JSON) { print(j.serialized(pretty: true)) }

/// Prints a plan (dry run) or the outcome of an apply, as text or JSON.
func report(_ r: ChangeReport, engine: Engine, json: Bool, dryRun: Bool) throws {
    let slugs = try engine.slugsByCode()
    if !json { for f in r.findings { print((f.repaired ? "NOTE " : "DOWN ") + f.message) } }
    if json {
        printJSON(r.json(slugs: slugs))
    } else if dryRun || r.result == nil {
        let lines = r.plan.lines(slugs: slugs)
        print(lines.isEmpty ? "Nothing to do: the server matches the state database." : lines.joined(separator: "\n"))
        if !lines.isEmpty { print("(dry run: nothing was changed)") }
    } else {
        print(r.summary)
        for f in r.result?.failures ?? [] { print("FAILED \(slugs[f.code] ?? f.code) (\(f.code)): \(f.reason)") }
    }
    if r.exitStatus != ExitStatus.ok { throw ExitCode(r.exitStatus) }
}
