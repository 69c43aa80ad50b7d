using MagCds.Core;

namespace MagCds.PackageBuilder;

// Regenerates the published package after a change to fhir-profiles/input, the knowledge or the code's vocabulary:
//   dotnet run --project tools/MagCds.PackageBuilder                      (writes fhir-profiles/package)
//   dotnet run --project tools/MagCds.PackageBuilder -- --canonical https://fhir.example.org/magcds --out /tmp/pkg [--tgz /tmp/pkg.tgz]
// The test suite builds the package the same way and fails when the checked-in copy differs.
internal static class BuildCommand
{
    public static async Task<int> Main(string[] args)
    {
        string? canonical = null, output = null, tgz = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--canonical" when i + 1 < args.Length: canonical = args[++i]; break;
                case "--out" when i + 1 < args.Length: output = args[++i]; break;
                case "--tgz" when i + 1 < args.Length: tgz = args[++i]; break;
                default:
                    Console.Error.WriteLine("usage: MagCds.PackageBuilder [--canonical <base url>] [--out <directory>] [--tgz <file>]");
                    return 64;
            }
        }

        string root = PackageBuilder.RepositoryRoot();
        var urls = canonical is null ? CanonicalUrls.Default : new CanonicalUrls(canonical);
        var built = await PackageBuilder.BuildAsync(Path.Combine(root, "fhir-profiles", "input"), urls);
        foreach (var p in built.Problems) Console.Error.WriteLine("problem: " + p);
        if (built.Problems.Count > 0) return 1;

        string target = output ?? Path.Combine(root, "fhir-profiles", "package");
        PackageBuilder.Write(built, target);
        Console.WriteLine($"{built.Files.Count} files written to {target}");
        if (tgz is not null)
        {
            PackageBuilder.WriteTarball(built, tgz);
            Console.WriteLine($"package tarball written to {tgz}");
        }
        return 0;
    }
}
