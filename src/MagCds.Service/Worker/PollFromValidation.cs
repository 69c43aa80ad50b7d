using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// <see cref="WorkerOptions.PollFrom"/> is a FHIR date or instant in the past, or empty. A value that cannot be read
/// was taken as "from now on", and one in the future skips every result until then: either way the catch-up the
/// operator asked for silently did not happen, so both stop the service at start-up.
/// </summary>
public sealed class PollFromValidation(TimeProvider time) : IValidateOptions<WorkerOptions>
{
    public ValidateOptionsResult Validate(string? name, WorkerOptions o)
    {
        if (!o.Enabled || string.IsNullOrWhiteSpace(o.PollFrom)) return ValidateOptionsResult.Success;
        // FHIR's own date/dateTime grammar (2026, 2026-11, 2026-11-27, 2026-11-27T18:00:00Z), not a culture's: "12/11/2026"
        // would be read as one day by some readers and another by others.
        if (!Hl7.Fhir.ElementModel.Types.DateTime.TryParse(o.PollFrom.Trim(), out var from))
            return ValidateOptionsResult.Fail($"MagCds:Worker:PollFrom must be a FHIR date or instant (e.g. 2026-11-27T18:00:00Z), or empty for \"from now on\"; '{o.PollFrom}' is neither.");
        // A few minutes ahead is a clock difference (the server's stamps, not this machine's, are what the poll compares).
        if (from.ToDateTimeOffset(TimeSpan.Zero) > time.GetUtcNow() + TimeSpan.FromMinutes(5))
            return ValidateOptionsResult.Fail($"MagCds:Worker:PollFrom ({o.PollFrom}) lies in the future: no result written before then would ever be polled.");
        return ValidateOptionsResult.Success;
    }
}
