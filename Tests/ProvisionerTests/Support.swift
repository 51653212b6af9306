import Foundation
@testable import Provisioner

/// Paths and helpers shared by the tests.
enum Support {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = packageRoot.appendingPathComponent("Tests/ProvisionerTests/Fixtures").path
    static let golden = packageRoot.appendingPathComponent("Tests/ProvisionerTests/Golden").path
    static let templates = packageRoot.appendingPathComponent("templates").path
    static let bandung = fixtures + "/villages-3204-bandung.csv"
    static let purbalingga = fixtures + "/villages-3303-purbalingga.csv"

    /// The built `desactl`, next to the test bundle.
    static var desactl: String {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for dir in [here, here.deletingLastPathComponent(), packageRoot.appendingPathComponent(".build/debug")] {
            let p = dir.appendingPathComponent("desactl").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return packageRoot.appendingPathComponent(".build/debug/desactl").path
    }

    static func villages(_ path: String, regency: String) throws -> [Village] {
        try VillageList.read(path: path, regency: regency).villages
    }

    static func read(_ path: String) -> String { AtomicFiles.read(path) ?? "" }
}

/// A journal that drops every entry, for tests that do not read it back.
struct NullJournal: JournalWriting {
    func send(_ fields: [String: String]) {}
}
