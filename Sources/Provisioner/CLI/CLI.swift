import ArgumentParser
import Foundation
import Logging

// What every desactl command shares, in the library so that a capability's commands can
// live in its own folder (`Databases/DatabaseCommand.swift`); desactl's root command lists
// them all.

/// Flags every command shares.
public struct GlobalOptions: ParsableArguments {
    public init() {}

    @Option(name: .long, help: ArgumentHelp("Config file (default: $DESA_CONFIG or /etc/desa/desa.toml); may also come first: desactl --config PATH tenant list.", valueName: "PATH"))
    public var config: String?

    @Flag(name: .shortAndLong, help: "Print each tenant's outcome, not just the summary.")
    public var verbose = false

    public var configPath: String { Config.resolvedPath(config) }

    public func loadConfig() throws -> Config { try Config.load(path: configPath) }

    public func logger() -> Logger {
        var l = Logger(label: "desactl") { _ in StderrLogHandler(program: "desactl") }
        l.logLevel = verbose ? .info : .notice
        return l
    }

    public func engine(json: Bool = false) throws -> Engine {
        let e = try Engine(config: try loadConfig(), logger: logger(),
                           progress: json ? SilentProgress() : TerminalProgress.forStderr())
        #if DEBUG
        // Tests only: DESA_TEST_NOW moves the clock (renewals, retry backoff).
        if let t = try TimeSource.testOverride() { e.time = t }
        #endif
        return e
    }
}

/// --dry-run and --json, shared by every mutating tenant command.
public struct ChangeOptions: ParsableArguments {
    public init() {}

    @Flag(help: "Print the plan and change nothing.") public var dryRun = false
    @Flag(help: "Print JSON.") public var json = false
}

/// How commands run, report and end.
public enum CLI {
    /// Runs a command body; an error of any type becomes one clear line on stderr and the
    /// exit status `ExitStatus.of` gives it.
    public static func run(_ body: () throws -> Void) throws {
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

    public static func printJSON(_ j: JSON) { print(j.serialized(pretty: true)) }

    /// Prints a plan (dry run) or the outcome of an apply, as text or JSON.
    public static func report(_ r: ChangeReport, engine: Engine, json: Bool, dryRun: Bool) throws {
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

    /// Runs a mutation and reports it. Input refused before the engine starts its own
    /// bookkeeping is still audited as "rejected".
    public static func mutate(_ global: GlobalOptions, _ o: ChangeOptions, op: String, target: String,
                              _ body: (Engine) throws -> ChangeReport) throws {
        try run {
            let e = try global.engine(json: o.json)
            let r: ChangeReport
            do { r = try body(e) } catch let err as DesaError where err.kind == .invalidInput && !o.dryRun {
                e.record(op: op, target: target, outcome: "rejected", detail: err.message)
                throw err
            }
            try report(r, engine: e, json: o.json, dryRun: o.dryRun)
        }
    }

    /// Prints an operation's report (JSON, or its lines) and ends with its exit status.
    public static func report<R: OperationReport>(_ r: R, json: Bool) throws {
        if json { printJSON(r.json) } else { for l in r.lines { print(l) } }
        if r.exitStatus != ExitStatus.ok { throw ExitCode(r.exitStatus) }
    }
}

public enum Table {
    public static func render(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ r: [String]) -> String {
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

extension Tenant.Status: ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

extension VillageKind: ExpressibleByArgument {
    public init?(argument: String) { self.init(label: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
