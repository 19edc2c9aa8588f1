import Foundation
import TestSupport
import Testing

/// `make install` and `make uninstall` into a staging root (`DESTDIR`, `PREFIX`), with the built debug binaries; and
/// `lintian` on the package `make deb` built.
@Suite("make install, make uninstall, lintian", .offCooperativePool, .serialized)
struct InstallTests {
    static let installed = [
        "bin/connvaultd", "bin/connvaultctl",
        "lib/systemd/system/connvaultd.service", "lib/systemd/system/connvaultd.socket",
        "lib/systemd/system/connvaultd-admin.socket",
        "lib/sysusers.d/connvault.conf", "lib/tmpfiles.d/connvault.conf",
        "share/man/man1/connvaultctl.1", "share/man/man8/connvaultd.8",
        "share/bash-completion/completions/connvaultctl", "share/zsh/vendor-completions/_connvaultctl",
        "share/fish/vendor_completions.d/connvaultctl.fish",
    ]

    /// The man pages need swift-argument-parser's `generate-manual`, which `make man` builds through the package
    /// plugin; that needs the build lock this test run holds, so the test wants it built already (`make test` does).
    static var manualToolBuilt: Bool {
        let build = "\(ServicePayload.repository)/.build"
        let enumerator = FileManager.default.enumerator(atPath: build)
        while let path = enumerator?.nextObject() as? String {
            if path.hasSuffix("/generate-manual") || path.hasSuffix("/generate-manual-tool"),
                FileManager.default.isExecutableFile(atPath: "\(build)/\(path)")
            {
                return true
            }
            if path.hasSuffix(".build") || path.contains("checkouts") || path.contains("repositories") {
                enumerator?.skipDescendants()
            }
        }
        return false
    }

    @Test(
        "make install puts every file under DESTDIR/PREFIX, the unit naming the installed daemon; uninstall removes them"
    )
    func installAndUninstall() throws {
        try #require(Binaries.areBuilt, "connvaultd and connvaultctl must be built")
        try #require(Self.manualToolBuilt, "generate-manual is not built yet: run make man (make test does) first")
        let stage = try TemporaryDirectory(prefix: "cvinst")
        defer { stage.remove() }
        let variables = [
            "DESTDIR=\(stage.path)", "PREFIX=/opt/cv", "INSTALL_BIN=\(Binaries.directory)", "SKIP_BUILD=1",
        ]
        let install = try Command.run(
            "/usr/bin/make",
            ["-C", ServicePayload.repository, "--no-print-directory", "install"] + variables,
            timeout: .seconds(120)
        )
        #expect(install.status == 0, "\(install)")
        for file in Self.installed {
            #expect(FileManager.default.fileExists(atPath: "\(stage.path)/opt/cv/\(file)"), "\(file) not installed")
        }
        let unit = try String(
            contentsOfFile: "\(stage.path)/opt/cv/lib/systemd/system/connvaultd.service",
            encoding: .utf8
        )
        #expect(unit.contains("ExecStart=/opt/cv/bin/connvaultd --admin-group connvault-admin"))
        let page = try String(contentsOfFile: "\(stage.path)/opt/cv/share/man/man8/connvaultd.8", encoding: .utf8)
        #expect(page.contains(".Dt CONNVAULTD 8") && page.contains("admin-group"))
        let completion = try String(
            contentsOfFile: "\(stage.path)/opt/cv/share/bash-completion/completions/connvaultctl",
            encoding: .utf8
        )
        #expect(completion.contains("connvaultctl") && completion.contains("rotate-key"))

        let uninstall = try Command.run(
            "/usr/bin/make",
            ["-C", ServicePayload.repository, "--no-print-directory", "uninstall"] + variables,
            timeout: .seconds(60)
        )
        #expect(uninstall.status == 0, "\(uninstall)")
        for file in Self.installed {
            #expect(!FileManager.default.fileExists(atPath: "\(stage.path)/opt/cv/\(file)"), "\(file) left behind")
        }
    }

    @Test(
        "lintian reports no error on the package",
        .enabled(if: ServicePayload.packagePath != nil || SystemdContainer.required, "CONNVAULT_DEB names no package")
    )
    func lintian() throws {
        let path = try #require(ServicePayload.packagePath, "CONNVAULT_DEB must name the package built by make deb")
        let result = try Command.run("/usr/bin/lintian", ["--fail-on", "error", path], timeout: .seconds(300))
        #expect(result.status == 0, "\(result)")
        #expect(!result.stdout.contains("E: "), "\(result.stdout)")
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        print("package \(path): \(size / 1024) KiB")
    }
}
