import ArgumentParser
import Foundation

/// `desactl portal`: the regency's portal page.
public struct PortalCommand: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "portal",
        abstract: "The regency's portal: one page of every village at portal.host (on by default).",
        subcommands: [Refresh.self]
    )

    public struct Refresh: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Write the portal's page again now from the state database, if it changed.",
            discussion: "desa-agent does this after every sweep it records, and desactl apply whenever villages change; this is for after a template was edited (then desactl apply, for the server block), or to time it.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false

        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: true)
                guard e.config.portal.enabled else { throw DesaError(.config, "the portal is off (portal.enabled = false in \(e.config.path))") }
                let started = Date()
                let wrote = try PortalCapability.refresh(e)
                let seconds = Date().timeIntervalSince(started)
                let path = PortalCapability.pagePath(e.config)
                guard FileManager.default.fileExists(atPath: path) else {
                    throw DesaError(.conflict, "the portal has not been applied yet: run desactl apply")
                }
                let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                if json {
                    CLI.printJSON(.object([("wrote", .bool(wrote)), ("path", .string(path)), ("bytes", .int(size)),
                                           ("seconds", .double((seconds * 10_000).rounded() / 10_000))]))
                } else {
                    print("\(wrote ? "wrote" : "unchanged:") \(path) (\(size) bytes) in \(String(format: "%.0f", seconds * 1000)) ms")
                }
            }
        }
    }
}
