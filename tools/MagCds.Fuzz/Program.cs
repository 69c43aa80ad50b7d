using MagCds.Fuzz;
using SharpFuzz;

// AFL++ feeds one input per run through stdin (tests/fuzz/run.sh instruments the assemblies and starts afl-fuzz).
// "once <file>" runs a single input in-process, to reproduce a finding.
if (args is ["once", var file])
{
    Target.Run(File.ReadAllBytes(file));
    Console.WriteLine("no crash");
    return;
}
Fuzzer.OutOfProcess.Run(stream =>
{
    using var m = new MemoryStream();
    stream.CopyTo(m);
    Target.Run(m.ToArray());
});
