// Hl7.Fhir.Model has a Task resource; in this project Task always means System.Threading.Tasks.Task.
global using Task = System.Threading.Tasks.Task;
global using NUnit.Framework;
