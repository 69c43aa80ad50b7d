using MagCds.Core.Evaluation;

namespace MagCds.Service.FhirRest;

/// <summary>A request MagCds refuses: the HTTP status and the MagCds code that go into the OperationOutcome.</summary>
public sealed class FhirRequestException(int status, OutcomeCode code, string message) : Exception(message)
{
    public int Status { get; } = status;
    public OutcomeCode Code { get; } = code;
}
