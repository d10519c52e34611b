// The delayed-task queues (order: payment reminders and expiries; cart: abandonment
// checks): how many tasks wait, retry, run or died, and each dead task with its last
// error, which an admin runs again or drops. Support staff read only.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { createLazyRoute } from "@tanstack/react-router";
import { useApi } from "../api/context";
import { useSession } from "../session-context";

export const Route = createLazyRoute("/admin/tasks")({ component: AdminTasks });

const QUEUES = [
  { path: "/v1/admin/tasks/order", name: "order", title: "Orders: payment reminders and expiries" },
  { path: "/v1/admin/tasks/cart", name: "cart", title: "Carts: abandonment checks" },
] as const;

export function AdminTasks() {
  return (
    <section aria-labelledby="admin-tasks-title">
      <h2 id="admin-tasks-title">Task queues</h2>
      {QUEUES.map((queue) => (
        <QueuePanel key={queue.name} queue={queue} />
      ))}
    </section>
  );
}

function QueuePanel({ queue }: { queue: (typeof QUEUES)[number] }) {
  const api = useApi();
  const session = useSession();
  const queryClient = useQueryClient();
  const view = useQuery({
    queryKey: ["task-queue", queue.name],
    queryFn: async () => {
      const { data, error } = await api.GET(queue.path);
      if (error) throw new Error(error.error.message);
      return data;
    },
    refetchInterval: 10_000,
  });
  const act = useMutation({
    mutationFn: async ({ id, action }: { id: string; action: "retry" | "drop" }) => {
      const { error } =
        action === "retry"
          ? queue.name === "order"
            ? await api.POST("/v1/admin/tasks/order/dead/{id}/retry", { params: { path: { id } } })
            : await api.POST("/v1/admin/tasks/cart/dead/{id}/retry", { params: { path: { id } } })
          : queue.name === "order"
            ? await api.DELETE("/v1/admin/tasks/order/dead/{id}", { params: { path: { id } } })
            : await api.DELETE("/v1/admin/tasks/cart/dead/{id}", { params: { path: { id } } });
      if (error) throw new Error(error.error.message);
    },
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["task-queue", queue.name] }),
  });
  const isAdmin = session.role === "admin";
  return (
    <section aria-label={queue.title} data-testid={`task-queue-${queue.name}`}>
      <h3>{queue.title}</h3>
      {view.isPending ? <p role="status">Loading…</p> : null}
      {view.isError ? <p role="alert">The queue could not be read: {view.error.message}</p> : null}
      {view.data ? (
        <>
          <dl className="totals">
            <dt>Scheduled</dt>
            <dd>{view.data.counts.scheduled}</dd>
            <dt>Retrying</dt>
            <dd>{view.data.counts.retrying}</dd>
            <dt>Running</dt>
            <dd>{view.data.counts.running}</dd>
            <dt>Dead</dt>
            <dd data-testid={`task-queue-${queue.name}-dead`}>{view.data.counts.dead}</dd>
          </dl>
          {act.isError ? <p role="alert">{act.error.message}</p> : null}
          {view.data.dead.length === 0 ? (
            <p>No dead tasks.</p>
          ) : (
            <table>
              <caption>Dead tasks</caption>
              <thead>
                <tr>
                  <th scope="col">Task</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Due</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Last error</th>
                  {isAdmin ? <th scope="col">Action</th> : null}
                </tr>
              </thead>
              <tbody>
                {view.data.dead.map((task) => (
                  <tr key={task.id}>
                    <td>{task.id}</td>
                    <td>{task.kind}</td>
                    <td>{new Date(task.dueAt).toLocaleString()}</td>
                    <td>
                      {task.attempts} of {task.maxAttempts}
                    </td>
                    <td>{task.error}</td>
                    {isAdmin ? (
                      <td>
                        <button
                          type="button"
                          disabled={act.isPending}
                          onClick={() => act.mutate({ id: task.id, action: "retry" })}
                        >
                          Run again
                        </button>{" "}
                        <button
                          type="button"
                          disabled={act.isPending}
                          onClick={() => act.mutate({ id: task.id, action: "drop" })}
                        >
                          Drop
                        </button>
                      </td>
                    ) : null}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      ) : null}
    </section>
  );
}
